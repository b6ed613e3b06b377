// mvd_engine_cli: the engine on the host (and under qemu for arm64).
//
//   mvd_engine_cli --package P --prompt S [--seed N] --out F.npy|F.rgb [--threads N] [--no-verify]
//                  [--frames F] [--height H] [--width W]   (one of the package's sizes; default: its first)
//   mvd_engine_cli --package P --self-test
//   mvd_engine_cli --package P --prompt S [--seed N] --benchmark F.json [--warmup 1] [--runs 5] [--emulated]
//   mvd_engine_cli --noise SEED --count N [--offset K] --out F.npy      (the portable noise, float32)
//   mvd_engine_cli --tokenizer tokenizer.json --prompt S | --prompts F.json   (ids only: {"ids": [[...], ...]};
//                  F.json is a list of prompts)
//
// Modes combine (self-test, then generate, then benchmark). Progress and results go to stderr; the
// last stdout line is a JSON summary (frames written, timings). Errors: one line on stderr, exit 2;
// a self-test below a vector's min_psnr_db: exit 1.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mvd/engine.h"

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "mvd_engine_cli: %s\n", message.c_str());
  std::exit(2);
}

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno == ERANGE || *end != '\0') return false;
  *out = v;
  return true;
}

int parse_int(const std::string& flag, const std::string& s, int min) {
  uint64_t v = 0;
  if (!parse_u64(s, &v) || v > 1000000 || int(v) < min) die(flag + " needs an integer >= " + std::to_string(min) + ", got '" + s + "'");
  return int(v);
}

// Writes `bytes` to `path` through a temporary file and a rename, so no reader sees half a file.
void write_atomic(const std::string& path, const std::string& header, const void* data, size_t size) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) die(path + ": cannot write (" + std::strerror(errno) + ")");
  const bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
                  (size == 0 || std::fwrite(data, 1, size, f) == size);
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    die(path + ": cannot write (" + std::strerror(errno) + ")");
  }
}

// NumPy .npy version 1.0: magic, header length, a dict padded to a multiple of 64 bytes.
std::string npy_header(const char* descr, const std::vector<int64_t>& shape) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = ((10 + dict.size() + 1 + 63) / 64) * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  std::string head = "\x93NUMPY";
  head += char(1);
  head += char(0);
  head += char(dict.size() & 0xff);
  head += char(dict.size() >> 8);
  return head + dict;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

nlohmann::json timings_json(const mvd::Timings& t) {
  return {{"text_encoder_ms", t.text_encoder_ms}, {"denoise_ms", t.denoise_ms}, {"vae_decoder_ms", t.vae_decoder_ms},
          {"total_ms", t.total_ms}, {"steps_ms", t.steps_ms}};
}

template <class T>
T check(mvd::Result<T> r) {
  if (!r.ok()) die(r.error().message);
  return std::move(r.value());
}

}  // namespace

int main(int argc, char** argv) {
  // ExecuTorch's log lines only with MVD_ENGINE_VERBOSE=1: errors are reported once, as one line.
  const char* verbose = std::getenv("MVD_ENGINE_VERBOSE");
  mvd::set_runtime_log(verbose != nullptr && std::string(verbose) == "1" ? [](char level, const char* m, size_t n) {
    std::fprintf(stderr, "executorch %c: %.*s\n", level, int(n), m);
  } : mvd::RuntimeLogFn(nullptr));
  std::map<std::string, std::string> opt;
  const std::vector<std::string> flags = {"--self-test", "--no-verify", "--emulated"};
  const std::vector<std::string> valued = {"--package", "--prompt", "--seed",  "--out",   "--threads", "--benchmark",
                                           "--warmup",  "--runs",   "--noise", "--count", "--offset",
                                           "--tokenizer", "--prompts", "--frames", "--height", "--width"};
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (std::find(flags.begin(), flags.end(), k) != flags.end()) {
      opt[k] = "1";
    } else if (std::find(valued.begin(), valued.end(), k) != valued.end()) {
      if (i + 1 >= argc) die("missing value for " + k);
      opt[k] = argv[++i];
    } else {
      die("unknown option '" + k + "' (see the usage at the top of mobile_sdk/engine/tools/cli.cpp)");
    }
  }
  auto has = [&](const char* k) { return opt.count(k) > 0; };

  if (has("--noise")) {
    uint64_t seed = 0, offset = 0;
    if (!parse_u64(opt["--noise"], &seed)) die("--noise needs a seed in [0, 2^64 - 1], got '" + opt["--noise"] + "'");
    if (has("--offset") && !parse_u64(opt["--offset"], &offset)) die("--offset needs a non-negative integer");
    if (!has("--count") || !has("--out")) die("--noise needs --count and --out F.npy");
    const int count = parse_int("--count", opt["--count"], 1);
    const auto values = mvd::portable_normal(seed, size_t(count), offset);
    write_atomic(opt["--out"], npy_header("<f4", {count}), values.data(), values.size() * sizeof(float));
    std::printf("%s\n", nlohmann::json({{"out", opt["--out"]}, {"count", count}}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  if (has("--tokenizer")) {
    const auto tokenizer = check(mvd::Tokenizer::load(opt["--tokenizer"]));
    std::vector<std::string> prompts;
    if (has("--prompts")) {
      std::ifstream f(opt["--prompts"], std::ios::binary);
      if (!f) die(opt["--prompts"] + ": cannot read");
      const auto list = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
      if (!list.is_array() || !std::all_of(list.begin(), list.end(), [](const auto& p) { return p.is_string(); }))
        die(opt["--prompts"] + ": not a JSON list of strings");
      for (const auto& p : list) prompts.push_back(p.get<std::string>());
    } else if (has("--prompt")) {
      prompts.push_back(opt["--prompt"]);
    } else {
      die("--tokenizer needs --prompt S or --prompts F.json");
    }
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& p : prompts) ids.push_back(check(tokenizer.encode(p)));
    std::printf("%s\n", nlohmann::json({{"ids", ids}}).dump().c_str());
    return 0;
  }

  if (!has("--package")) die("--package is required");
  const bool generate = has("--out"), bench = has("--benchmark"), self_test = has("--self-test");
  if (!generate && !bench && !self_test) die("nothing to do: give --out, --self-test or --benchmark");
  if ((generate || bench) && !has("--prompt")) die("--prompt is required with --out and --benchmark");
  uint64_t seed = 0;
  if (has("--seed") && !parse_u64(opt["--seed"], &seed)) die("--seed needs an integer in [0, 2^64 - 1], got '" + opt["--seed"] + "'");
  if (generate && !ends_with(opt["--out"], ".npy") && !ends_with(opt["--out"], ".rgb"))
    die(opt["--out"] + ": --out must end in .npy or .rgb");
  const int threads = has("--threads") ? parse_int("--threads", opt["--threads"], 1) : 0;
  auto size_flag = [&](const char* k) { return has(k) ? parse_int(k, opt[k], 1) : 0; };

  auto engine = check(mvd::Engine::open(opt["--package"], {!has("--no-verify"), threads, size_flag("--frames"),
                                                           size_flag("--height"), size_flag("--width")}));
  const auto& info = engine->info();
  std::fprintf(stderr, "package %s: model %s, %d frames %dx%d (of %zu sizes), %d steps, guidance %.2f, loaded in %.1f ms\n",
               info.package_name.c_str(), info.model.c_str(), info.frames, info.width, info.height, info.sizes.size(),
               info.steps, info.guidance_scale, engine->load_ms());

  int status = 0;
  if (self_test) {
    for (const auto& e : check(engine->self_test())) {
      std::fprintf(stderr, "self-test %-16s %-24s %7.2f dB (min %.1f) %s\n", e.vector.c_str(), e.what.c_str(), e.psnr_db,
                   e.min_psnr_db, e.passed ? "ok" : "FAILED");
      if (!e.passed) status = 1;
    }
    std::fprintf(stderr, "self-test %s\n", status == 0 ? "passed" : "FAILED");
  }
  nlohmann::json summary = {{"self_test", self_test ? nlohmann::json(status == 0 ? "passed" : "failed") : nlohmann::json()}};
  if (generate) {
    const auto video = check(engine->generate(opt["--prompt"], seed, [](int step, int total) {
      std::fprintf(stderr, "step %d/%d\n", step + 1, total);
      return true;
    }));
    const std::string& out = opt["--out"];
    const std::string header = ends_with(out, ".npy") ? npy_header("|u1", {video.frames, video.height, video.width, 3}) : "";
    write_atomic(out, header, video.rgb.data(), video.rgb.size());
    summary["out"] = out;
    summary["shape"] = {video.frames, video.height, video.width, 3};
    summary["fps"] = info.fps;
    summary["timings_ms"] = timings_json(engine->last_timings());
  }
  if (bench) {
    const int warmup = has("--warmup") ? parse_int("--warmup", opt["--warmup"], 0) : 1;
    const int runs = has("--runs") ? parse_int("--runs", opt["--runs"], 1) : 5;
    const std::string doc = check(engine->benchmark(opt["--prompt"], seed, {warmup, runs, has("--emulated")}));
    write_atomic(opt["--benchmark"], doc + "\n", nullptr, 0);
    summary["benchmark"] = opt["--benchmark"];
  }
  summary["load_ms"] = engine->load_ms();
  summary["peak_rss_mb"] = mvd::peak_rss_mb();
  std::printf("%s\n", summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return status;
}
