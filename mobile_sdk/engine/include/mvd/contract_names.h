// Generated from mobile_sdk/contract/names.json by mobile_sdk/contract/codegen.py; do not edit.
#pragma once

#include <array>
#include <cstdint>

namespace mvd::contract {

inline constexpr const char* PACKAGE_SCHEMA = "mobile-sdk-package";
inline constexpr int PACKAGE_SCHEMA_VERSION = 3;
inline constexpr std::array<int, 3> PACKAGE_READS_VERSIONS = {1, 2, 3};
inline constexpr const char* PACKAGE_SUFFIX = ".mobilepkg";
inline constexpr const char* MANIFEST_FILE = "manifest.json";
inline constexpr const char* TOKENIZER_FILE = "tokenizer.json";
inline constexpr const char* TEST_VECTOR_DIR = "test_vectors";
inline constexpr const char* TOKENIZER_BYTE = "byte";
inline constexpr const char* TOKENIZER_CLIP_BPE = "clip_bpe";
inline constexpr std::array<int, 2> TOKENIZER_READS_VERSIONS = {1, 2};
inline constexpr const char* SCHEDULER_TYPE = "rectified_flow_euler";
inline constexpr std::array<const char*, 3> COMPONENTS = {"text_encoder", "unet", "vae_decoder"};
inline constexpr const char* ENTRY_SINGLE = "main";
inline constexpr const char* ENTRY_PER_PLAN = "plan_{index}";
inline constexpr const char* ENTRY_SIZE_SUFFIX = "__{frames}x{height}x{width}";
inline constexpr const char* NOISE_GENERATOR = "splitmix64-boxmuller-v1";
inline constexpr const char* NOISE_TEST_VECTOR = "noise";
inline constexpr const char* PIPELINE_TEST_VECTOR = "pipeline";
inline constexpr const char* PIPELINE_BENCHMARK_FORMAT = "mobile-sdk-pipeline-benchmark";
inline constexpr const char* COREML_BENCHMARK_FORMAT = "mobile-sdk-coreml-benchmark";
inline constexpr const char* EXECUTORCH_TARGET = "executorch";
inline constexpr const char* EXECUTORCH_DIR = "executorch";
inline constexpr const char* EXECUTORCH_SUFFIX = ".pte";
inline constexpr const char* COREML_TARGET = "coreml";
inline constexpr const char* COREML_DIR = "coreml";
inline constexpr const char* COREML_SUFFIX = ".mlpackage";
inline constexpr std::array<const char*, 1> TEXT_ENCODER_INPUTS = {"input_ids"};
inline constexpr std::array<const char*, 2> TEXT_ENCODER_OUTPUTS = {"last_hidden_state", "pooled"};
inline constexpr std::array<const char*, 3> UNET_INPUTS = {"sample", "timestep", "encoder_hidden_states"};
inline constexpr std::array<const char*, 1> UNET_OUTPUTS = {"velocity"};
inline constexpr std::array<const char*, 1> VAE_DECODER_INPUTS = {"latents"};
inline constexpr std::array<const char*, 1> VAE_DECODER_OUTPUTS = {"rgb"};
inline constexpr std::array<const char*, 5> METRICS = {"model_load_time(ms)", "avg_inference_latency(ms)", "trimmean_inference_latency(ms)", "ram_pss_usage(mb)", "peak_rss(mb)"};

}  // namespace mvd::contract
