import Foundation

// The manifest.json types. Each type's `- Contract:` line names the JSON path it decodes; the SDK's
// tests/test_ios_demo.py checks every key below against a manifest the SDK writes and against
// mobile_sdk/contract/schemas/manifest.v*.schema.json, so a renamed key fails there, not on a phone.
// Optional properties are keys that some objects (or version 1) leave out.

/// What every reader checks before decoding the rest: a wrong version gets its own clear error.
/// - Contract: manifest $
struct ManifestHeader: Decodable {
    let schema: String?
    let schemaVersion: Int?

    enum CodingKeys: String, CodingKey {
        case schema
        case schemaVersion = "schema_version"
    }
}

/// manifest.json of a package, schema versions 1 to 3 (ContractNames.packageReadsVersions).
/// - Contract: manifest $
public struct PackageManifest: Decodable {
    public let schema: String
    public let schemaVersion: Int
    public let sdkVersion: String
    public let model: ModelInfo
    public let video: VideoInfo
    public let latent: LatentInfo
    public let tokenizer: TokenizerReference
    public let scheduler: SchedulerInfo
    public let steps: [Step]
    public let targets: Targets
    public let files: [String: FileEntry]
    public let testVectors: [String: TestVector]
    /// Version 2 and later: the portable generator that turns a seed into the initial latents.
    public let noise: NoiseSpec?
    /// Version 3: every size the package generates at, the default (the top-level video, latent, steps) first.
    public let sizes: [PackageSize]?

    enum CodingKeys: String, CodingKey {
        case schema
        case schemaVersion = "schema_version"
        case sdkVersion = "sdk_version"
        case model, video, latent, tokenizer, scheduler, steps, targets, files, noise, sizes
        case testVectors = "test_vectors"
    }
}

/// One size a package generates at: `MobilePackage.size(frames:height:width:)` picks it.
/// - Contract: manifest $.sizes[*]
public struct PackageSize: Decodable {
    public let video: VideoInfo
    public let latent: LatentInfo
    public let steps: [Step]
    /// The VAE decoder's function at this size (the UNet's are the steps' unetMethod).
    public let vaeDecoderMethod: String

    enum CodingKeys: String, CodingKey {
        case video, latent, steps
        case vaeDecoderMethod = "vae_decoder_method"
    }

    /// [1, C, T, h, w]: the shape of the initial noise and of every UNet sample at this size.
    public var latentShape: [Int] { [1, latent.channels, video.numFrames, latent.height, latent.width] }
}

/// - Contract: manifest $.model
public struct ModelInfo: Decodable {
    public let name: String
    public let preset: String?
    public let description: String?
}

/// - Contract: manifest $.video
public struct VideoInfo: Decodable {
    public let height: Int
    public let width: Int
    public let numFrames: Int
    public let fps: Int

    enum CodingKeys: String, CodingKey {
        case height, width, fps
        case numFrames = "num_frames"
    }
}

/// - Contract: manifest $.latent
public struct LatentInfo: Decodable {
    public let channels: Int
    public let height: Int
    public let width: Int
}

/// Version 2 keeps the tokenizer's ids only in tokenizer.json; both versions name the file here.
/// - Contract: manifest $.tokenizer
public struct TokenizerReference: Decodable {
    public let file: String
}

/// - Contract: manifest $.scheduler
public struct SchedulerInfo: Decodable {
    public let type: String
    /// Absent or 1.0: one UNet call per step; otherwise classifier-free guidance with the empty prompt.
    public let guidanceScale: Double?

    enum CodingKeys: String, CodingKey {
        case type
        case guidanceScale = "guidance_scale"
    }
}

/// One denoising step: `latents += dt * unet[unetMethod](latents, timestep, hidden)`.
/// - Contract: manifest $.steps[*]
public struct Step: Decodable {
    public let index: Int
    public let timestep: Double
    public let dt: Double
    public let unetMethod: String

    enum CodingKeys: String, CodingKey {
        case index, timestep, dt
        case unetMethod = "unet_method"
    }
}

/// - Contract: manifest $.targets
public struct Targets: Decodable {
    /// Absent when the package was exported for ExecuTorch only.
    public let coreml: CoreMLTarget?
}

/// - Contract: manifest $.targets.coreml
public struct CoreMLTarget: Decodable {
    public let deploymentTarget: String?
    public let components: [String: CoreMLComponent]

    enum CodingKeys: String, CodingKey {
        case components
        case deploymentTarget = "deployment_target"
    }
}

/// One component's .mlpackage: its functions (several plans or sizes share one multifunction model),
/// IO, and when it was over the size limit, the chain of models that replaces `file`.
/// - Contract: manifest $.targets.coreml.components.*
public struct CoreMLComponent: Decodable {
    public let file: String?
    public let functions: [String: FunctionInfo]
    public let inputs: [IOSpec]
    public let outputs: [IOSpec]
    public let bytes: Int
    public let chain: [ChainPart]?

    /// Only the function names are used; what the SDK records about each (op counts) is for people.
    public struct FunctionInfo: Decodable {}
}

/// - Contract: manifest $.targets.coreml.components.*.inputs[*]
/// - Contract: manifest $.targets.coreml.components.*.outputs[*]
public struct IOSpec: Decodable {
    public let name: String
    public let shape: [Int]
    public let dtype: String
}

/// - Contract: manifest $.targets.coreml.components.*.chain[*]
public struct ChainPart: Decodable {
    public let file: String
}

/// - Contract: manifest $.files.*
public struct FileEntry: Decodable {
    public let sha256: String
    public let bytes: Int
}

/// A recorded input/output set the apps replay in their tests.
/// - Contract: manifest $.test_vectors.*
public struct TestVector: Decodable {
    public let component: String
    public let method: String?
    public let prompt: String?
    /// Version 2: the seed of the `noise` and `pipeline` vectors.
    public let seed: UInt64?
    public let inputs: [String: TensorSpec]
    public let outputs: [String: TensorSpec]
    public let minPSNRdB: Double?
    /// Version 2: outputs that must match bit for bit (the portable noise).
    public let exact: Bool?

    enum CodingKeys: String, CodingKey {
        case component, method, prompt, seed, inputs, outputs, exact
        case minPSNRdB = "min_psnr_db"
    }
}

/// A raw little-endian tensor file inside the package.
/// - Contract: manifest $.test_vectors.*.inputs.*
/// - Contract: manifest $.test_vectors.*.outputs.*
public struct TensorSpec: Decodable {
    public let file: String
    public let shape: [Int]
    public let dtype: String
}

/// - Contract: manifest $.noise
public struct NoiseSpec: Decodable {
    public let generator: String
    public let dtype: String
}
