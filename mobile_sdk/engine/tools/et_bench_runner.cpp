// et_bench_runner: time one method of an ExecuTorch program, the same way on a host and on a phone
// (the profiler's latency tables; built with the engine, whose thread pool and header check it shares).
//
//   et_bench_runner --model M.pte [--method forward] [--warmup 5] [--runs 20] [--threads N]
//                   [--etdump OUT.etdp]
//
// Float inputs are filled with 0.5, integer ones with 3 (timings of the delegated kernels do not depend on values). Prints one
// JSON object on stdout: per-run times (ms), load time, and resident memory (bytes) before loading,
// after loading, and the most seen after any timed run. With --etdump, one more traced run writes an ETDump for
// per-op breakdowns; it is not part of the timings.
#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mvd/engine.h"
#include "programs.h"

using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Tag;

namespace {

// Current resident set (Linux and Android). The high-water mark (getrusage) is no use here: startup
// touches more pages than a small program's whole working set.
int64_t rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  std::fclose(f);
  return resident < 0 ? -1 : static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "et_bench_runner: %s\n", what.c_str());
  std::exit(1);
}

struct Args {
  std::string model, method = "forward", etdump;
  int warmup = 5, runs = 20, threads = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) fail("missing value for " + k);
    std::string v = argv[++i];
    if (k == "--model") a.model = v;
    else if (k == "--method") a.method = v;
    else if (k == "--etdump") a.etdump = v;
    else if (k == "--warmup") a.warmup = std::atoi(v.c_str());
    else if (k == "--runs") a.runs = std::atoi(v.c_str());
    else if (k == "--threads") a.threads = std::atoi(v.c_str());
    else fail("unknown option " + k);
  }
  if (a.model.empty()) fail("--model is required");
  if (a.runs < 1 || a.warmup < 0) fail("--runs must be >= 1 and --warmup >= 0");
  return a;
}

// Owns the input tensors so the EValues stay valid.
struct Inputs {
  std::vector<executorch::extension::TensorPtr> tensors;
  std::vector<EValue> values;
};

Inputs make_inputs(Module& module, const std::string& method, const std::string& model) {
  auto meta = module.method_meta(method);
  if (!meta.ok()) fail(model + ": no method '" + method + "'");
  Inputs in;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok() || *tag != Tag::Tensor) fail(model + ": input " + std::to_string(i) + " is not a tensor");
    auto info = meta->input_tensor_meta(i);
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    const auto type = info->scalar_type();
    const bool integral = type == executorch::aten::ScalarType::Long || type == executorch::aten::ScalarType::Int;
    // Integer inputs are token ids: 3 is the first byte token, valid for any vocabulary.
    in.tensors.push_back(integral ? executorch::extension::full(sizes, 3, type) : executorch::extension::full(sizes, 0.5, type));
  }
  for (auto& t : in.tensors) in.values.emplace_back(t);
  return in;
}

double run_once_ms(Module& module, const std::string& method, const Inputs& in, const std::string& model) {
  auto t0 = std::chrono::steady_clock::now();
  auto result = module.execute(method, in.values);
  auto t1 = std::chrono::steady_clock::now();
  if (!result.ok()) fail(model + ": execute failed with error " + std::to_string(static_cast<int>(result.error())));
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

void write_etdump(const Args& a) {
  auto tracer = std::make_unique<executorch::etdump::ETDumpGen>();
  auto* gen = tracer.get();
  Module module(a.model, Module::LoadMode::File, std::move(tracer));
  if (module.load_method(a.method) != Error::Ok) fail(a.model + ": cannot load method for ETDump");
  Inputs in = make_inputs(module, a.method, a.model);
  run_once_ms(module, a.method, in, a.model);
  auto data = gen->get_etdump_data();
  if (data.buf == nullptr || data.size == 0) fail("ETDump is empty");
  FILE* f = std::fopen(a.etdump.c_str(), "wb");
  if (f == nullptr) fail("cannot write " + a.etdump);
  std::fwrite(data.buf, 1, data.size, f);
  std::fclose(f);
  std::free(data.buf);
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  const size_t threads = mvd::set_threads(a.threads);
  if (auto header = mvd::check_pte_header(a.model); !header.ok()) fail(header.error().message);

  const int64_t rss_start = rss_bytes();
  auto l0 = std::chrono::steady_clock::now();
  Module module(a.model, Module::LoadMode::File);
  if (module.load_method(a.method) != Error::Ok) fail(a.model + ": cannot load method '" + a.method + "'");
  Inputs in = make_inputs(module, a.method, a.model);
  auto l1 = std::chrono::steady_clock::now();
  const int64_t rss_loaded = rss_bytes();

  for (int i = 0; i < a.warmup; ++i) run_once_ms(module, a.method, in, a.model);
  std::vector<double> times;
  int64_t rss_peak = rss_loaded;
  for (int i = 0; i < a.runs; ++i) {
    times.push_back(run_once_ms(module, a.method, in, a.model));
    rss_peak = std::max(rss_peak, rss_bytes());
  }

  if (!a.etdump.empty()) write_etdump(a);

  std::printf("{\"model\": \"%s\", \"method\": \"%s\", \"threads\": %zu, \"warmup\": %d, \"load_ms\": %.4f, "
              "\"rss_bytes_start\": %lld, \"rss_bytes_loaded\": %lld, \"rss_bytes_peak\": %lld, "
              "\"times_ms\": [",
              a.model.c_str(), a.method.c_str(), threads, a.warmup,
              std::chrono::duration<double, std::milli>(l1 - l0).count(), static_cast<long long>(rss_start),
              static_cast<long long>(rss_loaded), static_cast<long long>(rss_peak));
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.5f", i ? ", " : "", times[i]);
  std::printf("]}\n");
  return 0;
}
