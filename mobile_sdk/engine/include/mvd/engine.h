// mvd_engine: runs a mobile-sdk package (NAME.mobilepkg/) with ExecuTorch, prompt to RGB frames.
//
// The package contract (layout, manifest, rules) is mobile_sdk/package.py and
// mobile_sdk/contract/names.json; fixed names come from the generated contract_names.h. Every
// function reports failure through Result/Error: the library never exits, aborts or throws
// across its API.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace mvd {

enum class ErrorCode {
  kInvalidArgument = 1,  // bad caller input (empty prompt is fine; a wrong latent size is not)
  kPackage,              // malformed manifest/tokenizer, path escapes, unlisted or missing file
  kChecksum,             // a file's size or sha256 differs from the manifest
  kProgram,              // a .pte is not a program, or ExecuTorch cannot load it or a method
  kMissingMethod,        // a method named in the manifest is not in the program
  kShape,                // a tensor's shape or dtype differs from what the method/manifest says
  kRuntime,              // ExecuTorch failed while executing
  kCancelled,            // the progress callback returned false or cancel() was called
  kIO,                   // reading or writing a file failed
};

struct Error {
  ErrorCode code;
  std::string message;  // one line, naming the file and the problem
};

// A value or an Error. `ok()` first, then `value()` or `error()`.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: empty on success.
struct Status {
  Status() = default;
  Status(Error e) : error_(std::make_shared<Error>(std::move(e))) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return error_ == nullptr; }
  const Error& error() const { return *error_; }

 private:
  std::shared_ptr<Error> error_;
};

enum class DType { kFloat32, kFloat16, kInt64, kInt32, kUInt8 };

// A dense little-endian host tensor (C order).
struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  int64_t numel() const;
  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
  static Tensor from_floats(std::vector<int64_t> shape, const std::vector<float>& values);
  std::vector<double> to_doubles() const;  // any dtype, for comparisons
};

const char* dtype_name(DType dtype);
Result<DType> parse_dtype(const std::string& name);
size_t dtype_size(DType dtype);

// --- the portable noise generator (splitmix64-boxmuller-v1, mobile_sdk/noise.py) -----------------
// float32 standard normal values `offset .. offset + count - 1` for `seed`, bit-identical to
// mobile_sdk.noise.portable_normal on every platform (build with -ffp-contract=off).
std::vector<float> portable_normal(uint64_t seed, size_t count, uint64_t offset = 0);

// --- the tokenizer (tokenizer.json: mobile_sdk/contract/schemas/tokenizer.v2.schema.json) -----------
class ClipBpe;  // src/clip_tokenizer.h

struct Tokenizer {
  int64_t pad_id = 0, bos_id = 1, eos_id = 2, byte_offset = 3, max_length = 0;
  std::shared_ptr<const ClipBpe> clip;  // type clip_bpe: vocab and merges (immutable, shared by copies); else byte

  // Reads and checks a tokenizer.json; errors (kPackage) name the file.
  static Result<Tokenizer> load(const std::string& path);
  // BOS, the prompt's ids truncated to max_length - 2, EOS, then pad_id up to max_length.
  // byte: UTF-8 bytes + byte_offset. clip_bpe: CLIP's byte-level BPE; a prompt that is not valid
  // UTF-8 is refused (kInvalidArgument).
  Result<std::vector<int64_t>> encode(const std::string& prompt) const;
};

// --- the engine -------------------------------------------------------------------------------
struct OpenOptions {
  bool verify_checksums = true;  // sha256 of every file against the manifest's `files`
  int threads = 0;               // XNNPACK thread pool size; 0 keeps ExecuTorch's default
  // The size to generate at, one of the package's (VideoInfo::sizes); 0 (or less): the default size's.
  int frames = 0, height = 0, width = 0;
};

// A size a package generates at: frames, height, width (pixels).
using VideoSize = std::array<int, 3>;

struct VideoInfo {
  std::string package_name, model;
  int schema_version = 0;
  int frames = 0, height = 0, width = 0, fps = 0, steps = 0;  // of the size the engine was opened at
  std::vector<VideoSize> sizes;  // every size of the package, the default first
  int latent_channels = 0, latent_height = 0, latent_width = 0;
  double guidance_scale = 1.0;
  std::string manifest_sha256;
  std::vector<int64_t> latent_shape() const { return {1, latent_channels, frames, latent_height, latent_width}; }
};

// Wall times of one generate() (ms). A step covers all its UNet calls (2 with guidance).
struct Timings {
  double text_encoder_ms = 0, denoise_ms = 0, vae_decoder_ms = 0, total_ms = 0;
  std::vector<double> steps_ms;
};

// uint8 RGB frames [frames, height, width, 3].
struct Video {
  int frames = 0, height = 0, width = 0;
  std::vector<uint8_t> rgb;
};

// Called after each denoising step (0-based index, total); return false to cancel.
using ProgressFn = std::function<bool(int step, int total_steps)>;

struct BenchmarkOptions {
  int warmup = 1, runs = 5;
  bool emulated = false;  // under qemu: recorded in the result so nobody tables the timings
};

struct SelfTestEntry {
  std::string vector, what;  // test vector name; what was compared ("velocity", "frames", "ids")
  double psnr_db = 0, min_psnr_db = 0;
  bool passed = false;
};

class Package;
class Programs;

class Engine {
 public:
  // Opens and checks the package, tokenizer and programs, and loads every method it will call.
  static Result<std::unique_ptr<Engine>> open(const std::string& package_dir, const OpenOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const VideoInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  double load_ms() const { return load_ms_; }

  // prompt -> frames, with the initial latents portable_normal(seed, info().latent_shape()).
  Result<Video> generate(const std::string& prompt, uint64_t seed, const ProgressFn& progress = {});
  // The same from given initial latents [1, C, T, h, w]; `final_latents` (optional) gets the last x.
  Result<Video> generate_from_latents(const std::string& prompt, const std::vector<float>& latents,
                                      const ProgressFn& progress = {}, std::vector<float>* final_latents = nullptr);
  // Asks a running generate() to stop at its next program call (thread-safe). The flag is cleared
  // when the next generate() starts.
  void cancel() { cancel_.store(true); }
  const Timings& last_timings() const { return timings_; }

  // One method of one component on explicit inputs (test vectors, tools).
  Result<std::vector<Tensor>> run_method(const std::string& component, const std::string& method,
                                         const std::vector<Tensor>& inputs);

  // Replays the manifest's test_vectors; one entry per comparison.
  Result<std::vector<SelfTestEntry>> self_test();

  // Warm-up + timed generations; the pipeline-benchmark.v1 JSON document.
  Result<std::string> benchmark(const std::string& prompt, uint64_t seed, const BenchmarkOptions& options);

 private:
  Engine();
  static Result<std::unique_ptr<Engine>> open_impl(const std::string& package_dir, const OpenOptions& options);
  Result<std::vector<SelfTestEntry>> self_test_impl();
  Status check_cancel(const char* where, int step);

  std::unique_ptr<Package> package_;
  std::unique_ptr<Programs> programs_;
  VideoInfo info_;
  Tokenizer tokenizer_;
  std::vector<std::string> step_methods_;
  std::vector<double> step_timesteps_, step_dts_;
  std::string text_method_, decoder_method_;
  std::vector<int64_t> decoder_input_shape_;
  double load_ms_ = 0;
  std::atomic<bool> cancel_{false};
  Timings timings_;
};

// Peak resident set and proportional set size of this process in MB (negative where unknown).
double peak_rss_mb();
double pss_mb();

// 10 log10(peak^2 / MSE); peak defaults to the reference's largest magnitude; 200 when identical
// (export/lowering/parity.py's definition).
double psnr_db(const std::vector<double>& reference, const std::vector<double>& test, double peak = -1);

// Where ExecuTorch's own log lines go (level 'D', 'I', 'E', 'F'); nullptr drops them. Failures
// reach callers as Error messages either way; call before Engine::open.
using RuntimeLogFn = void (*)(char level, const char* message, size_t length);
bool set_runtime_log(RuntimeLogFn fn);

// The XNNPACK thread pool size (0 leaves the default); returns the size in use.
size_t set_threads(int threads);

}  // namespace mvd
