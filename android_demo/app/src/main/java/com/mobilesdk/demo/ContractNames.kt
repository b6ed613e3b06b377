// Generated from mobile_sdk/contract/names.json by mobile_sdk/contract/codegen.py; do not edit.
package com.mobilesdk.demo

object ContractNames {
    const val PACKAGE_SCHEMA: String = "mobile-sdk-package"
    const val PACKAGE_SCHEMA_VERSION: Int = 3
    val PACKAGE_READS_VERSIONS: List<Int> = listOf(1, 2, 3)
    const val PACKAGE_SUFFIX: String = ".mobilepkg"
    const val MANIFEST_FILE: String = "manifest.json"
    const val TOKENIZER_FILE: String = "tokenizer.json"
    const val TEST_VECTOR_DIR: String = "test_vectors"
    const val TOKENIZER_BYTE: String = "byte"
    const val TOKENIZER_CLIP_BPE: String = "clip_bpe"
    val TOKENIZER_READS_VERSIONS: List<Int> = listOf(1, 2)
    const val SCHEDULER_TYPE: String = "rectified_flow_euler"
    val COMPONENTS: List<String> = listOf("text_encoder", "unet", "vae_decoder")
    const val ENTRY_SINGLE: String = "main"
    const val ENTRY_PER_PLAN: String = "plan_{index}"
    const val ENTRY_SIZE_SUFFIX: String = "__{frames}x{height}x{width}"
    const val NOISE_GENERATOR: String = "splitmix64-boxmuller-v1"
    const val NOISE_TEST_VECTOR: String = "noise"
    const val PIPELINE_TEST_VECTOR: String = "pipeline"
    const val PIPELINE_BENCHMARK_FORMAT: String = "mobile-sdk-pipeline-benchmark"
    const val COREML_BENCHMARK_FORMAT: String = "mobile-sdk-coreml-benchmark"
    const val EXECUTORCH_TARGET: String = "executorch"
    const val EXECUTORCH_DIR: String = "executorch"
    const val EXECUTORCH_SUFFIX: String = ".pte"
    const val COREML_TARGET: String = "coreml"
    const val COREML_DIR: String = "coreml"
    const val COREML_SUFFIX: String = ".mlpackage"
    val TEXT_ENCODER_INPUTS: List<String> = listOf("input_ids")
    val TEXT_ENCODER_OUTPUTS: List<String> = listOf("last_hidden_state", "pooled")
    val UNET_INPUTS: List<String> = listOf("sample", "timestep", "encoder_hidden_states")
    val UNET_OUTPUTS: List<String> = listOf("velocity")
    val VAE_DECODER_INPUTS: List<String> = listOf("latents")
    val VAE_DECODER_OUTPUTS: List<String> = listOf("rgb")
    val METRICS: List<String> = listOf("model_load_time(ms)", "avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "ram_pss_usage(mb)", "peak_rss(mb)")
}
