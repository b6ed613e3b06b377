// The C API over mvd::Engine. Nothing may throw across it: allocation failure is the only
// exception the engine's code can raise, and it is caught at each entry point.
#include "mvd/engine_c.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "mvd/engine.h"

struct mvd_engine {
  std::unique_ptr<mvd::Engine> engine;
  std::string last_error;
};

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

mvd_status fail(mvd_engine* e, const mvd::Error& err) {
  e->last_error = err.message;
  return static_cast<int>(err.code);
}

mvd_status out_of_memory(mvd_engine* e) {
  e->last_error = "out of memory";
  return static_cast<int>(mvd::ErrorCode::kRuntime);
}

}  // namespace

extern "C" {

mvd_engine* mvd_open(const char* package_dir, int verify_checksums, int threads, int frames, int height, int width,
                     char** error) {
  if (error != nullptr) *error = nullptr;
  try {
    if (package_dir == nullptr) {
      if (error != nullptr) *error = copy_string("mvd_open: package_dir is NULL");
      return nullptr;
    }
    auto engine = mvd::Engine::open(package_dir, {verify_checksums != 0, threads, frames, height, width});
    if (!engine.ok()) {
      if (error != nullptr) *error = copy_string(engine.error().message);
      return nullptr;
    }
    return new mvd_engine{std::move(engine.value()), ""};
  } catch (const std::bad_alloc&) {
    if (error != nullptr) *error = copy_string("mvd_open: out of memory");
    return nullptr;
  }
}

void mvd_close(mvd_engine* engine) { delete engine; }

const char* mvd_last_error(const mvd_engine* engine) { return engine != nullptr ? engine->last_error.c_str() : ""; }

char* mvd_video_info(mvd_engine* e) {
  if (e == nullptr) return nullptr;
  try {
    const auto& i = e->engine->info();
    const nlohmann::json j = {{"frames", i.frames}, {"height", i.height}, {"width", i.width}, {"fps", i.fps},
                              {"steps", i.steps},   {"model", i.model},   {"sizes", i.sizes}};
    return copy_string(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

mvd_status mvd_generate(mvd_engine* e, const char* prompt, uint64_t seed, mvd_progress_fn progress, void* user,
                        uint8_t** rgb, size_t* size) {
  if (e == nullptr || prompt == nullptr || rgb == nullptr || size == nullptr) return static_cast<int>(mvd::ErrorCode::kInvalidArgument);
  *rgb = nullptr;
  *size = 0;
  try {
    mvd::ProgressFn fn;
    if (progress != nullptr) fn = [progress, user](int step, int total) { return progress(user, step, total) != 0; };
    auto video = e->engine->generate(prompt, seed, fn);
    if (!video.ok()) return fail(e, video.error());
    auto* out = static_cast<uint8_t*>(std::malloc(video->rgb.size()));
    if (out == nullptr) return out_of_memory(e);
    std::memcpy(out, video->rgb.data(), video->rgb.size());
    *rgb = out;
    *size = video->rgb.size();
    e->last_error.clear();
    return MVD_OK;
  } catch (const std::bad_alloc&) {
    return out_of_memory(e);
  }
}

void mvd_cancel(mvd_engine* e) {
  if (e != nullptr) e->engine->cancel();
}

char* mvd_last_timings(mvd_engine* e) {
  if (e == nullptr) return nullptr;
  try {
    const auto& t = e->engine->last_timings();
    const nlohmann::json j = {{"text_encoder_ms", t.text_encoder_ms}, {"denoise_ms", t.denoise_ms},
                              {"vae_decoder_ms", t.vae_decoder_ms},   {"total_ms", t.total_ms},
                              {"steps_ms", t.steps_ms}};
    return copy_string(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

mvd_status mvd_benchmark(mvd_engine* e, const char* prompt, uint64_t seed, int warmup, int runs, char** json) {
  if (e == nullptr || prompt == nullptr || json == nullptr) return static_cast<int>(mvd::ErrorCode::kInvalidArgument);
  *json = nullptr;
  try {
    auto doc = e->engine->benchmark(prompt, seed, {warmup, runs, false});
    if (!doc.ok()) return fail(e, doc.error());
    *json = copy_string(doc.value());
    return *json != nullptr ? MVD_OK : out_of_memory(e);
  } catch (const std::bad_alloc&) {
    return out_of_memory(e);
  }
}

void mvd_free(void* p) { std::free(p); }

}  // extern "C"
