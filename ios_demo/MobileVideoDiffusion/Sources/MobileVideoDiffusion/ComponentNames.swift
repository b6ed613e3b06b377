/// The component and IO names the pipeline addresses, taken from the generated ContractNames in the
/// order names.json lists them (components: text encoder, UNet, VAE decoder; IO: argument order).
enum Component {
    static let textEncoder = ContractNames.components[0]
    static let unet = ContractNames.components[1]
    static let vaeDecoder = ContractNames.components[2]
}

enum IO {
    static let inputIds = ContractNames.textEncoderInputs[0]
    static let hiddenStates = ContractNames.textEncoderOutputs[0]
    static let sample = ContractNames.unetInputs[0]
    static let timestep = ContractNames.unetInputs[1]
    static let encoderHiddenStates = ContractNames.unetInputs[2]
    static let velocity = ContractNames.unetOutputs[0]
    static let latents = ContractNames.vaeDecoderInputs[0]
    static let rgb = ContractNames.vaeDecoderOutputs[0]
}
