#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "mvd/contract_names.h"
#include "mvd/engine.h"
#include "names.h"
#include "package.h"
#include "programs.h"

using nlohmann::json;

namespace mvd {

// ---- tensors and dtypes -------------------------------------------------------------------------
const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kFloat16: return 2;
    case DType::kInt64: return 8;
    case DType::kUInt8: return 1;
  }
  return 0;
}

Result<DType> parse_dtype(const std::string& name) {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kInt64, DType::kInt32, DType::kUInt8})
    if (name == dtype_name(d)) return d;
  return Error{ErrorCode::kShape, "unknown dtype '" + name + "'"};
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.assign(size_t(t.numel()) * dtype_size(dtype), 0);
  return t;
}

Tensor Tensor::from_floats(std::vector<int64_t> shape, const std::vector<float>& values) {
  Tensor t = zeros(DType::kFloat32, std::move(shape));
  std::memcpy(t.data.data(), values.data(), std::min(t.data.size(), values.size() * sizeof(float)));
  return t;
}

namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) return (sign ? -1.0f : 1.0f) * std::ldexp(float(mant), -24);
  uint32_t bits = exp == 31 ? sign | 0x7f800000 | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

const float* floats(const Tensor& t) { return reinterpret_cast<const float*>(t.data.data()); }
float* floats(Tensor& t) { return reinterpret_cast<float*>(t.data.data()); }

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

std::vector<double> Tensor::to_doubles() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  const size_t es = dtype_size(dtype);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t* p = data.data() + i * es;
    switch (dtype) {
      case DType::kFloat32: out[i] = load<float>(p); break;
      case DType::kFloat16: out[i] = half_to_float(load<uint16_t>(p)); break;
      case DType::kInt64: out[i] = double(load<int64_t>(p)); break;
      case DType::kInt32: out[i] = load<int32_t>(p); break;
      case DType::kUInt8: out[i] = *p; break;
    }
  }
  return out;
}

double psnr_db(const std::vector<double>& ref, const std::vector<double>& test, double peak) {
  constexpr double cap = 200.0;
  if (ref.size() != test.size() || ref.empty()) return 0.0;
  double mse = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = ref[i] - test[i];
    mse += d * d;
    max_abs = std::max(max_abs, std::fabs(ref[i]));
  }
  mse /= double(ref.size());
  if (std::isnan(mse)) return 0.0;
  peak = peak < 0 ? max_abs : peak;
  if (mse == 0.0 || peak == 0.0) return cap;
  return std::min(cap, 10.0 * std::log10(peak * peak / mse));
}

// ---- engine -------------------------------------------------------------------------------------
Engine::Engine() = default;
Engine::~Engine() = default;

namespace {

Result<std::vector<TensorSpec>> parse_specs(const Package& pkg, const json& list, const std::string& where) {
  if (!list.is_array()) return Error{ErrorCode::kPackage, pkg.manifest_path() + ": " + where + " is not a list"};
  std::vector<TensorSpec> specs;
  for (const auto& s : list) {
    if (!s.is_object() || !s.value("name", json()).is_string() || !s.value("shape", json()).is_array() ||
        !s.value("dtype", json()).is_string())
      return Error{ErrorCode::kPackage, pkg.manifest_path() + ": " + where + " entries need name, shape and dtype"};
    auto dtype = parse_dtype(s["dtype"].get<std::string>());
    if (!dtype.ok()) return Error{ErrorCode::kPackage, pkg.manifest_path() + ": " + where + ": " + dtype.error().message};
    TensorSpec spec{s["name"].get<std::string>(), dtype.value(), {}};
    for (const auto& d : s["shape"]) {
      if (!d.is_number_integer()) return Error{ErrorCode::kPackage, pkg.manifest_path() + ": " + where + ": bad shape"};
      spec.shape.push_back(d.get<int64_t>());
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

Result<int> get_int(const Package& pkg, const std::string& key) {
  auto v = pkg.at(key);
  if (!v.ok()) return v.error();
  if (!v.value()->is_number_integer() || v.value()->get<int64_t>() <= 0 || v.value()->get<int64_t>() > (1 << 30))
    return Error{ErrorCode::kPackage, pkg.manifest_path() + ": '" + key + "' must be a positive integer"};
  return int(v.value()->get<int64_t>());
}

std::string size_str(const VideoSize& s) {
  return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]);
}

// Where each size's video, latent, steps and decoder method are: under sizes/<i>/ (version 3), or the
// manifest's top level for a package of one size (versions 1 and 2).
Result<std::vector<std::string>> size_prefixes(const Package& pkg) {
  if (!pkg.manifest().contains("sizes")) return std::vector<std::string>{""};
  auto sizes = pkg.at("sizes");
  if (!sizes.value()->is_array() || sizes.value()->empty())
    return Error{ErrorCode::kPackage, pkg.manifest_path() + ": 'sizes' must be a non-empty list"};
  for (const char* key : {"video", "latent", "steps"})  // as the Python reader checks it
    if (pkg.manifest().value(key, json()) != (*sizes.value())[0].value(key, json()))
      return Error{ErrorCode::kPackage, pkg.manifest_path() + ": sizes[0] must be the default size: the top-level video, latent and steps"};
  std::vector<std::string> out;
  for (size_t i = 0; i < sizes.value()->size(); ++i) out.push_back("sizes/" + std::to_string(i) + "/");
  return out;
}

// The key-path prefix of the size `options` asks for (frames, height, width; 0: the default's), and
// every size into `sizes`; a size the package lacks is an error listing those it has.
Result<std::string> choose_size(const Package& pkg, const OpenOptions& options, std::vector<VideoSize>& sizes) {
  const auto listed = size_prefixes(pkg);
  if (!listed.ok()) return listed.error();
  const auto& prefixes = listed.value();
  for (const auto& prefix : prefixes) {
    VideoSize s{};
    const char* keys[] = {"video/num_frames", "video/height", "video/width"};
    for (size_t k = 0; k < s.size(); ++k) {
      auto v = get_int(pkg, prefix + keys[k]);
      if (!v.ok()) return v.error();
      s[k] = v.value();
    }
    sizes.push_back(s);
  }
  const int asked[] = {options.frames, options.height, options.width};
  VideoSize want = sizes[0];
  for (size_t k = 0; k < want.size(); ++k) want[k] = asked[k] > 0 ? asked[k] : want[k];
  const auto found = std::find(sizes.begin(), sizes.end(), want);
  if (found != sizes.end()) return prefixes[size_t(found - sizes.begin())];
  std::string have;
  for (const auto& s : sizes) have += (have.empty() ? "" : ", ") + size_str(s);
  return Error{ErrorCode::kInvalidArgument, pkg.root() + ": no size " + size_str(want) +
                                                " (frames x height x width) in this package; it was exported for " + have};
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::open(const std::string& package_dir, const OpenOptions& options) {
  try {
    return open_impl(package_dir, options);
  } catch (const json::exception& e) {  // a manifest value of the wrong JSON type
    return Error{ErrorCode::kPackage, package_dir + "/" + contract::MANIFEST_FILE + ": unexpected value (" + e.what() + ")"};
  }
}

Result<std::unique_ptr<Engine>> Engine::open_impl(const std::string& package_dir, const OpenOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  auto engine = std::unique_ptr<Engine>(new Engine());
  set_threads(options.threads);
  auto pkg = Package::open(package_dir, options.verify_checksums);
  if (!pkg.ok()) return pkg.error();
  const Package& p = *pkg.value();
  const std::string mpath = p.manifest_path();
  auto tok = Tokenizer::load(p.path(contract::TOKENIZER_FILE));
  if (!tok.ok()) return tok.error();
  engine->tokenizer_ = tok.value();

  VideoInfo& info = engine->info_;
  info.package_name = std::filesystem::path(p.root()).filename().string();
  info.schema_version = p.manifest()["schema_version"].get<int>();
  info.manifest_sha256 = p.manifest_sha256();
  auto size = choose_size(p, options, info.sizes);
  if (!size.ok()) return size.error();
  const std::string& at = size.value();  // where the chosen size's video, latent and steps are
  for (auto [key, field] : std::initializer_list<std::pair<const char*, int*>>{
           {"video/num_frames", &info.frames}, {"video/height", &info.height}, {"video/width", &info.width},
           {"video/fps", &info.fps}, {"latent/channels", &info.latent_channels},
           {"latent/height", &info.latent_height}, {"latent/width", &info.latent_width}}) {
    auto v = get_int(p, at + key);
    if (!v.ok()) return v.error();
    *field = v.value();
  }
  auto model = p.at("model/name");
  info.model = model.ok() && model.value()->is_string() ? model.value()->get<std::string>() : "";
  auto guidance = p.at("scheduler/guidance_scale");
  if (guidance.ok() && !guidance.value()->is_number())
    return Error{ErrorCode::kPackage, mpath + ": scheduler.guidance_scale must be a number"};
  info.guidance_scale = guidance.ok() ? guidance.value()->get<double>() : 1.0;

  auto components = p.at(std::string("targets/") + names::kTarget + "/components");
  if (!components.ok()) return Error{ErrorCode::kPackage, mpath + ": the package has no executorch target"};
  std::map<std::string, std::string> files;
  std::map<std::string, std::map<std::string, std::vector<TensorSpec>>> manifest_methods;
  std::map<std::string, std::map<std::string, std::vector<std::string>>> output_names;
  for (const char* comp : contract::COMPONENTS) {
    const json* c = components.value()->contains(comp) ? &(*components.value())[comp] : nullptr;
    if (c == nullptr || !c->is_object() || !c->value("file", json()).is_string() || !c->value("methods", json()).is_object() ||
        c->at("methods").empty())
      return Error{ErrorCode::kPackage, mpath + ": targets." + names::kTarget + ".components." + comp + " needs 'file' and 'methods'"};
    files[comp] = p.path(c->at("file").get<std::string>());
    for (auto it = c->at("methods").begin(); it != c->at("methods").end(); ++it) {
      auto specs = parse_specs(p, it.value().value("inputs", json()), std::string(comp) + ".methods." + it.key() + ".inputs");
      if (!specs.ok()) return specs.error();
      manifest_methods[comp][it.key()] = specs.value();
      auto outputs = parse_specs(p, it.value().value("outputs", json()), std::string(comp) + ".methods." + it.key() + ".outputs");
      if (!outputs.ok()) return outputs.error();
      for (const auto& o : outputs.value()) output_names[comp][it.key()].push_back(o.name);
    }
  }

  // Steps: each names its UNet method, timestep and dt.
  auto steps = p.at(at + "steps");
  if (!steps.ok() || !steps.value()->is_array() || steps.value()->empty())
    return Error{ErrorCode::kPackage, mpath + ": '" + at + "steps' must be a non-empty list"};
  for (const auto& s : *steps.value()) {
    if (!s.is_object() || !s.value("unet_method", json()).is_string() || !s.value("timestep", json()).is_number() ||
        !s.value("dt", json()).is_number())
      return Error{ErrorCode::kPackage, mpath + ": every step needs unet_method, timestep and dt"};
    const std::string method = s["unet_method"].get<std::string>();
    if (manifest_methods[names::kUNet].count(method) == 0)
      return Error{ErrorCode::kMissingMethod, mpath + ": step method '" + method + "' is not among the unet's methods"};
    engine->step_methods_.push_back(method);
    engine->step_timesteps_.push_back(s["timestep"].get<double>());
    engine->step_dts_.push_back(s["dt"].get<double>());
  }
  info.steps = int(engine->step_methods_.size());

  // The text encoder's entry: its only method. The decoder's: the size's (version 3), else its only
  // method or the one sized for this video's latents.
  auto pick = [&](const char* comp, auto fits) -> Result<std::string> {
    std::vector<std::string> match;
    for (const auto& [name, specs] : manifest_methods[comp])
      if (manifest_methods[comp].size() == 1 || fits(specs)) match.push_back(name);
    if (match.size() != 1)
      return Error{ErrorCode::kPackage, mpath + ": cannot choose the " + comp + " method (" + std::to_string(match.size()) +
                                            " candidates)"};
    return match[0];
  };
  auto text_method = pick(names::kTextEncoder, [](const auto&) { return false; });
  if (!text_method.ok()) return text_method.error();
  engine->text_method_ = text_method.value();
  auto named_decoder = [&]() -> Result<std::string> {
    auto named = p.at(at + "vae_decoder_method");
    if (!named.ok()) return named.error();
    if (!named.value()->is_string() || manifest_methods[names::kDecoder].count(named.value()->get<std::string>()) == 0)
      return Error{ErrorCode::kMissingMethod, mpath + ": '" + at + "vae_decoder_method' is not among the vae_decoder's methods"};
    return named.value()->get<std::string>();
  };
  auto dec_method = !at.empty() ? named_decoder() : pick(names::kDecoder, [&](const std::vector<TensorSpec>& s) {
    return s.size() == 1 && s[0].shape.size() == 4 && s[0].shape[1] == info.latent_channels &&
           s[0].shape[2] == info.latent_height && s[0].shape[3] == info.latent_width;
  });
  if (!dec_method.ok()) return dec_method.error();
  engine->decoder_method_ = dec_method.value();

  // The contract's IO names, in order: the loop passes inputs by position and reads output 0.
  auto check_io = [&](const char* comp, const std::string& method, const auto& inputs, const auto& outputs) -> Status {
    std::vector<std::string> want_in(inputs.begin(), inputs.end()), want_out(outputs.begin(), outputs.end()), got_in;
    for (const auto& s : manifest_methods[comp][method]) got_in.push_back(s.name);
    const auto& got_out = output_names[comp][method];
    if (got_in == want_in && got_out == want_out) return {};
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
      return "[" + out + "]";
    };
    return Error{ErrorCode::kPackage, mpath + ": " + comp + " method '" + method + "' has inputs " + join(got_in) + " and outputs " +
                                          join(got_out) + ", the contract says " + join(want_in) + " and " + join(want_out)};
  };
  std::vector<Status> io = {check_io(names::kTextEncoder, engine->text_method_, contract::TEXT_ENCODER_INPUTS, contract::TEXT_ENCODER_OUTPUTS),
                            check_io(names::kDecoder, engine->decoder_method_, contract::VAE_DECODER_INPUTS, contract::VAE_DECODER_OUTPUTS)};
  for (const auto& m : engine->step_methods_) io.push_back(check_io(names::kUNet, m, contract::UNET_INPUTS, contract::UNET_OUTPUTS));
  for (const auto& s : io)
    if (!s.ok()) return s.error();

  // Shapes the loop relies on, checked once here against the manifest (and below against the programs).
  const auto& te = manifest_methods[names::kTextEncoder][engine->text_method_];
  if (te.size() != 1 || te[0].shape != std::vector<int64_t>{1, engine->tokenizer_.max_length} ||
      (te[0].dtype != DType::kInt64 && te[0].dtype != DType::kInt32))
    return Error{ErrorCode::kShape, mpath + ": text_encoder input must be int ids [1, " +
                                        std::to_string(engine->tokenizer_.max_length) + "] (tokenizer max_length)"};
  for (const auto& m : engine->step_methods_) {
    const auto& u = manifest_methods[names::kUNet][m];
    if (u.size() != 3 || u[0].shape != info.latent_shape() || u[1].dtype != DType::kFloat32 || u[1].shape != std::vector<int64_t>{1})
      return Error{ErrorCode::kShape, mpath + ": unet method '" + m + "' must take sample " + shape_str(info.latent_shape()) +
                                          ", timestep [1], encoder_hidden_states"};
  }
  const auto& dec = manifest_methods[names::kDecoder][engine->decoder_method_];
  if (dec.size() != 1 || dec[0].shape.size() != 4 || dec[0].shape[0] < 1 || dec[0].shape[1] != info.latent_channels ||
      dec[0].shape[2] != info.latent_height || dec[0].shape[3] != info.latent_width)
    return Error{ErrorCode::kShape, mpath + ": vae_decoder input must be [n, " + std::to_string(info.latent_channels) + ", " +
                                        std::to_string(info.latent_height) + ", " + std::to_string(info.latent_width) + "]"};
  engine->decoder_input_shape_ = dec[0].shape;

  // Load only the methods the pipeline calls; each is checked against the manifest's inputs.
  std::map<std::string, std::map<std::string, std::vector<TensorSpec>>> used;
  used[names::kTextEncoder][engine->text_method_] = te;
  for (const auto& m : engine->step_methods_) used[names::kUNet][m] = manifest_methods[names::kUNet][m];
  used[names::kDecoder][engine->decoder_method_] = dec;
  auto programs = Programs::open(files, used);
  if (!programs.ok()) return programs.error();
  engine->programs_ = std::move(programs.value());
  engine->package_ = std::move(pkg.value());
  engine->load_ms_ = ms_since(t0);
  return engine;
}

Status Engine::check_cancel(const char* where, int step) {
  if (!cancel_.load()) return {};
  return Error{ErrorCode::kCancelled, "generation cancelled " + std::string(where) +
                                          (step >= 0 ? " (after step " + std::to_string(step) + " of " + std::to_string(info_.steps) + ")" : "")};
}

Result<std::vector<Tensor>> Engine::run_method(const std::string& component, const std::string& method,
                                               const std::vector<Tensor>& inputs) {
  return programs_->run(component, method, inputs);
}

Result<Video> Engine::generate(const std::string& prompt, uint64_t seed, const ProgressFn& progress) {
  const auto shape = info_.latent_shape();
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return generate_from_latents(prompt, portable_normal(seed, size_t(n)), progress);
}

Result<Video> Engine::generate_from_latents(const std::string& prompt, const std::vector<float>& latents,
                                            const ProgressFn& progress, std::vector<float>* final_latents) {
  cancel_.store(false);
  timings_ = Timings{};
  const auto start = std::chrono::steady_clock::now();
  Tensor x = Tensor::from_floats(info_.latent_shape(), latents);
  if (size_t(x.numel()) != latents.size())
    return Error{ErrorCode::kInvalidArgument, "initial latents hold " + std::to_string(latents.size()) + " values, the package needs " +
                                                  shape_str(info_.latent_shape())};

  auto encode = [&](const std::string& text) -> Result<Tensor> {
    auto encoded = tokenizer_.encode(text);
    if (!encoded.ok()) return encoded.error();
    const auto& ids = encoded.value();
    auto spec = programs_->input_specs(names::kTextEncoder, text_method_);
    if (!spec.ok()) return spec.error();
    Tensor t = Tensor::zeros((*spec)[0].dtype, {1, int64_t(ids.size())});
    for (size_t i = 0; i < ids.size(); ++i) {
      if (t.dtype == DType::kInt64) reinterpret_cast<int64_t*>(t.data.data())[i] = ids[i];
      else reinterpret_cast<int32_t*>(t.data.data())[i] = int32_t(ids[i]);
    }
    auto out = programs_->run(names::kTextEncoder, text_method_, {t});
    if (!out.ok()) return out.error();
    return std::move(out.value()[0]);  // last_hidden_state
  };
  const bool guided = info_.guidance_scale != 1.0;
  auto t0 = std::chrono::steady_clock::now();
  auto hidden = encode(prompt);
  if (!hidden.ok()) return hidden.error();
  Result<Tensor> uncond = Tensor{};
  if (guided) {
    if (auto s = check_cancel("before the unconditional text encoding", -1); !s.ok()) return s.error();
    uncond = encode("");
    if (!uncond.ok()) return uncond.error();
  }
  timings_.text_encoder_ms = ms_since(t0);

  t0 = std::chrono::steady_clock::now();
  const int steps = info_.steps;
  const float scale = float(info_.guidance_scale);
  for (int i = 0; i < steps; ++i) {
    if (auto s = check_cancel("before a UNet call", i); !s.ok()) return s.error();
    const auto ts = std::chrono::steady_clock::now();
    const Tensor t = Tensor::from_floats({1}, {float(step_timesteps_[size_t(i)])});
    auto v = programs_->run(names::kUNet, step_methods_[size_t(i)], {x, t, hidden.value()});
    if (!v.ok()) return v.error();
    Tensor& vc = v.value()[0];
    if (vc.numel() != x.numel() || vc.dtype != DType::kFloat32)
      return Error{ErrorCode::kShape, "unet method '" + step_methods_[size_t(i)] + "' returned " + dtype_name(vc.dtype) + " " +
                                          shape_str(vc.shape) + ", expected float32 " + shape_str(x.shape)};
    float* vel = floats(vc);
    if (guided) {
      if (auto s = check_cancel("before a UNet call", i); !s.ok()) return s.error();
      auto vu_out = programs_->run(names::kUNet, step_methods_[size_t(i)], {x, t, uncond.value()});
      if (!vu_out.ok()) return vu_out.error();
      const float* vu = floats(vu_out.value()[0]);
      for (int64_t k = 0; k < x.numel(); ++k) vel[k] = vu[k] + scale * (vel[k] - vu[k]);
    }
    const float dt = float(step_dts_[size_t(i)]);
    float* xs = floats(x);
    for (int64_t k = 0; k < x.numel(); ++k) xs[k] = xs[k] + dt * vel[k];
    timings_.steps_ms.push_back(ms_since(ts));
    if (progress && !progress(i, steps))
      return Error{ErrorCode::kCancelled, "generation cancelled by the progress callback after step " + std::to_string(i + 1) +
                                              " of " + std::to_string(steps)};
  }
  timings_.denoise_ms = ms_since(t0);
  if (final_latents != nullptr) final_latents->assign(floats(x), floats(x) + x.numel());

  // Decode: frame f of [1, C, T, h, w] is the [C, h, w] slice at f; the decoder takes n frames per
  // call (the last call is padded by repeating the last frame, as the Python runtime does).
  t0 = std::chrono::steady_clock::now();
  const int C = info_.latent_channels, T = info_.frames, h = info_.latent_height, w = info_.latent_width;
  const int H = info_.height, W = info_.width;
  const int per_call = int(decoder_input_shape_[0]);
  Video video{T, H, W, std::vector<uint8_t>(size_t(T) * H * W * 3)};
  const float* xs = floats(x);
  for (int f0 = 0; f0 < T; f0 += per_call) {
    if (auto s = check_cancel("before a decoder call", -1); !s.ok()) return s.error();
    Tensor z = Tensor::zeros(DType::kFloat32, decoder_input_shape_);
    float* zs = floats(z);
    for (int j = 0; j < per_call; ++j) {
      const int f = std::min(f0 + j, T - 1);
      for (int c = 0; c < C; ++c)
        std::memcpy(zs + (size_t(j) * C + c) * h * w, xs + (size_t(c) * T + f) * h * w, sizeof(float) * h * w);
    }
    auto rgb = programs_->run(names::kDecoder, decoder_method_, {z});
    if (!rgb.ok()) return rgb.error();
    const Tensor& img = rgb.value()[0];
    if (img.dtype != DType::kFloat32 || img.shape != std::vector<int64_t>{per_call, 3, H, W})
      return Error{ErrorCode::kShape, "vae_decoder method '" + decoder_method_ + "' returned " + dtype_name(img.dtype) + " " +
                                          shape_str(img.shape) + ", expected float32 [" + std::to_string(per_call) + ", 3, " +
                                          std::to_string(H) + ", " + std::to_string(W) + "]"};
    const float* px = floats(img);
    for (int j = 0; j < per_call && f0 + j < T; ++j)
      for (int c = 0; c < 3; ++c)
        for (int k = 0; k < H * W; ++k) {
          // round(clamp(x, 0, 1) * 255), half to even, in float32 like torch.
          const float raw = px[(size_t(j) * 3 + c) * H * W + k];
          const float v = std::isnan(raw) ? 0.0f : std::min(std::max(raw, 0.0f), 1.0f) * 255.0f;
          video.rgb[(size_t(f0 + j) * H * W + k) * 3 + c] = static_cast<uint8_t>(std::nearbyint(v));
        }
  }
  timings_.vae_decoder_ms = ms_since(t0);
  timings_.total_ms = ms_since(start);
  return video;
}

}  // namespace mvd
