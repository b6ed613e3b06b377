// Process and device facts for results: thread pool, memory, device description.
#include <sys/utsname.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__ANDROID__)
#include <sys/system_properties.h>
#endif

#include <executorch/runtime/platform/platform.h>

#include "mvd/engine.h"
#include "system.h"

// The wheel ships the thread pool library without its header; these declarations match it
// (the same as the profiling runner's).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace mvd {

size_t set_threads(int threads) {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) return 1;
  if (threads > 0 && pool->get_thread_count() != size_t(threads)) pool->_unsafe_reset_threadpool(uint32_t(threads));
  return pool->get_thread_count();
}

namespace {

RuntimeLogFn runtime_log = nullptr;

void emit_log(et_timestamp_t, et_pal_log_level_t level, const char*, const char*, size_t, const char* message, size_t length) {
  if (runtime_log != nullptr) runtime_log(static_cast<char>(level), message, length);
}

// The value of "Key:   value kB" in a /proc file, in kB; -1 when absent.
double proc_kb(const char* file, const char* key) {
  std::ifstream f(file);
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::stod(line.substr(n + 1));
  return -1;
}

[[maybe_unused]] std::string first_line(const char* file) {
  std::ifstream f(file);
  std::string line;
  std::getline(f, line);
  return line;
}

[[maybe_unused]] std::string cpuinfo(const char* key) {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) != 0) continue;
    const auto colon = line.find(':');
    if (colon != std::string::npos && line.find_first_not_of(" \t", n) == colon) {
      const auto start = line.find_first_not_of(' ', colon + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "";
}

#if defined(__ANDROID__)
std::string property(const char* name) {
  char value[PROP_VALUE_MAX] = {0};
  __system_property_get(name, value);
  return value;
}
#endif

}  // namespace

bool set_runtime_log(RuntimeLogFn fn) {
  runtime_log = fn;
  return executorch::runtime::register_pal(executorch::runtime::PalImpl::create(emit_log, __FILE__));
}

double peak_rss_mb() {
  const double kb = proc_kb("/proc/self/status", "VmHWM");
  return kb < 0 ? -1 : kb / 1024.0;
}

double pss_mb() {
  const double kb = proc_kb("/proc/self/smaps_rollup", "Pss");
  return kb < 0 ? -1 : kb / 1024.0;
}

namespace detail {

DeviceFacts device_facts() {
  DeviceFacts d;
  struct utsname u {};
  uname(&u);
#if defined(__ANDROID__)
  d.model = property("ro.product.model");
  d.soc = property("ro.soc.model");
  if (d.soc.empty()) d.soc = property("ro.board.platform");
  d.os = "Android " + property("ro.build.version.release");
#else
  d.model = first_line("/sys/devices/virtual/dmi/id/product_name");
  d.soc = cpuinfo("model name");
  if (d.soc.empty()) d.soc = cpuinfo("Hardware");
  d.os = std::string(u.sysname) + " " + u.release;
#endif
  if (d.model.empty()) d.model = u.nodename;
  if (d.soc.empty()) d.soc = u.machine;
#if defined(__aarch64__) && defined(__ANDROID__)
  d.abi = "arm64-v8a";
#elif defined(__aarch64__)
  d.abi = "arm64";
#elif defined(__x86_64__)
  d.abi = "x86_64";
#else
  d.abi = u.machine;
#endif
  return d;
}

}  // namespace detail
}  // namespace mvd
