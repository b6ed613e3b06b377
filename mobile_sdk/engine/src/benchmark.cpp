// --benchmark: warm-up generations (not counted), timed generations, and the pipeline-benchmark.v1
// document (mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json).
#include <algorithm>
#include <ctime>
#include <numeric>

#include "mvd/contract_names.h"
#include "mvd/engine.h"
#include "names.h"
#include "package.h"
#include "system.h"

#ifndef MVD_ENGINE_VERSION
#define MVD_ENGINE_VERSION "0.0.0"
#endif
#ifndef MVD_EXECUTORCH_VERSION
#define MVD_EXECUTORCH_VERSION "unknown"
#endif

using nlohmann::json;

namespace mvd {
namespace {

constexpr double TRIM_FRACTION = 0.1;  // as profiling/runner.py: 10 % cut at each end

double trimmed_mean(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t k = size_t(double(v.size()) * TRIM_FRACTION);
  const auto begin = v.size() > 2 * k ? v.begin() + long(k) : v.begin();
  const auto end = v.size() > 2 * k ? v.end() - long(k) : v.end();
  return std::accumulate(begin, end, 0.0) / double(end - begin);
}

json stat(const std::vector<double>& runs) {
  return {{"mean", std::accumulate(runs.begin(), runs.end(), 0.0) / double(runs.size())},
          {"trimmean", trimmed_mean(runs)},
          {"runs", runs}};
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json memory(double mb) { return mb < 0 ? json(nullptr) : json(mb); }

}  // namespace

Result<std::string> Engine::benchmark(const std::string& prompt, uint64_t seed, const BenchmarkOptions& options) {
  if (options.runs < 1 || options.warmup < 0)
    return Error{ErrorCode::kInvalidArgument, "benchmark needs runs >= 1 and warmup >= 0"};
  for (int i = 0; i < options.warmup; ++i) {
    auto video = generate(prompt, seed);
    if (!video.ok()) return video.error();
  }
  std::vector<Timings> runs;
  for (int i = 0; i < options.runs; ++i) {
    auto video = generate(prompt, seed);
    if (!video.ok()) return video.error();
    runs.push_back(timings_);
  }
  auto column = [&](double Timings::*field) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*field);
    return v;
  };
  json steps = json::array();
  for (int s = 0; s < info_.steps; ++s) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.steps_ms[size_t(s)]);
    steps.push_back(stat(v));
  }
  const auto totals = column(&Timings::total_ms);
  const auto facts = detail::device_facts();
  json device = {{"model", facts.model}, {"soc", facts.soc}, {"os", facts.os}, {"abi", facts.abi}};
  if (options.emulated) device["emulated"] = true;
  const json doc = {
      {"format", contract::PIPELINE_BENCHMARK_FORMAT},
      {"version", 1},
      {"tool", std::string("mobile-sdk-engine ") + MVD_ENGINE_VERSION},
      {"device", device},
      {"runtime", {{"name", "executorch"}, {"version", MVD_EXECUTORCH_VERSION}, {"compute_units", "xnnpack"}}},
      {"threads", set_threads(0)},
      {"date", utc_now()},
      {"package",
       {{"name", info_.package_name}, {"model", info_.model}, {"schema_version", info_.schema_version},
        {"manifest_sha256", info_.manifest_sha256}}},
      {"prompt", prompt},
      {"seed", seed},
      {"warmup", options.warmup},
      {"runs", options.runs},
      {"metrics",
       {{contract::METRICS[0], load_ms_},
        {contract::METRICS[1], std::accumulate(totals.begin(), totals.end(), 0.0) / double(totals.size())},
        {contract::METRICS[2], trimmed_mean(totals)},
        {contract::METRICS[3], memory(pss_mb())},
        {contract::METRICS[4], memory(peak_rss_mb())}}},
      {"stages_ms",
       {{names::kTextEncoder, stat(column(&Timings::text_encoder_ms))},
        {"denoise", stat(column(&Timings::denoise_ms))},
        {names::kDecoder, stat(column(&Timings::vae_decoder_ms))},
        {"total", stat(totals)}}},
      {"steps_ms", steps},
  };
  return doc.dump(2, ' ', false, json::error_handler_t::replace);  // a prompt may hold invalid UTF-8
}

}  // namespace mvd
