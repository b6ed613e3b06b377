// Generated from mobile_sdk/contract/names.json by mobile_sdk/contract/codegen.py; do not edit.

public enum ContractNames {
    public static let packageSchema: String = "mobile-sdk-package"
    public static let packageSchemaVersion: Int = 3
    public static let packageReadsVersions: [Int] = [1, 2, 3]
    public static let packageSuffix: String = ".mobilepkg"
    public static let manifestFile: String = "manifest.json"
    public static let tokenizerFile: String = "tokenizer.json"
    public static let testVectorDir: String = "test_vectors"
    public static let tokenizerByte: String = "byte"
    public static let tokenizerClipBpe: String = "clip_bpe"
    public static let tokenizerReadsVersions: [Int] = [1, 2]
    public static let schedulerType: String = "rectified_flow_euler"
    public static let components: [String] = ["text_encoder", "unet", "vae_decoder"]
    public static let entrySingle: String = "main"
    public static let entryPerPlan: String = "plan_{index}"
    public static let entrySizeSuffix: String = "__{frames}x{height}x{width}"
    public static let noiseGenerator: String = "splitmix64-boxmuller-v1"
    public static let noiseTestVector: String = "noise"
    public static let pipelineTestVector: String = "pipeline"
    public static let pipelineBenchmarkFormat: String = "mobile-sdk-pipeline-benchmark"
    public static let coremlBenchmarkFormat: String = "mobile-sdk-coreml-benchmark"
    public static let executorchTarget: String = "executorch"
    public static let executorchDir: String = "executorch"
    public static let executorchSuffix: String = ".pte"
    public static let coremlTarget: String = "coreml"
    public static let coremlDir: String = "coreml"
    public static let coremlSuffix: String = ".mlpackage"
    public static let textEncoderInputs: [String] = ["input_ids"]
    public static let textEncoderOutputs: [String] = ["last_hidden_state", "pooled"]
    public static let unetInputs: [String] = ["sample", "timestep", "encoder_hidden_states"]
    public static let unetOutputs: [String] = ["velocity"]
    public static let vaeDecoderInputs: [String] = ["latents"]
    public static let vaeDecoderOutputs: [String] = ["rgb"]
    public static let metrics: [String] = ["model_load_time(ms)", "avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "ram_pss_usage(mb)", "peak_rss(mb)"]
}
