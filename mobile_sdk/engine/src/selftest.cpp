// Replays the package's test vectors (manifest `test_vectors`): the tokenizer's ids, each component
// on its recorded inputs, and the whole pipeline from its recorded initial latents.
#include <cstring>

#include "mvd/contract_names.h"
#include "mvd/engine.h"
#include "names.h"
#include "package.h"

using nlohmann::json;

namespace mvd {
namespace {

Error vector_error(const Package& pkg, const std::string& name, const std::string& what) {
  return {ErrorCode::kPackage, pkg.manifest_path() + ": test vector '" + name + "': " + what};
}

// Names of a method's inputs or outputs in the manifest's order.
Result<std::vector<std::string>> io_names(const Package& pkg, const std::string& component, const std::string& method,
                                          const char* side) {
  auto list = pkg.at(std::string("targets/") + names::kTarget + "/components/" + component + "/methods/" + method + "/" + side);
  if (!list.ok()) return list.error();
  std::vector<std::string> names;
  for (const auto& s : *list.value()) names.push_back(s.value("name", ""));
  return names;
}

}  // namespace

Result<std::vector<SelfTestEntry>> Engine::self_test() {
  try {
    return self_test_impl();
  } catch (const json::exception& e) {  // a test vector entry of the wrong JSON type
    return vector_error(*package_, "*", std::string("unexpected value (") + e.what() + ")");
  }
}

Result<std::vector<SelfTestEntry>> Engine::self_test_impl() {
  const Package& pkg = *package_;
  auto vectors = pkg.at("test_vectors");
  if (!vectors.ok() || !vectors.value()->is_object() || vectors.value()->empty())
    return vector_error(pkg, "*", "the manifest has no test vectors");
  std::vector<SelfTestEntry> entries;
  for (auto it = vectors.value()->begin(); it != vectors.value()->end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (!v.is_object() || !v.value("component", json()).is_string() || !v.value("outputs", json()).is_object())
      return vector_error(pkg, name, "needs 'component' and 'outputs'");
    const std::string component = v["component"].get<std::string>();
    const json min_db_value = v.value("min_psnr_db", json(0.0));
    const double min_db = min_db_value.is_number() ? min_db_value.get<double>() : 0.0;
    const bool exact = v.value("exact", json(false)) == true;  // bit-identical required (the noise vector)
    auto tensor = [&](const char* side, const std::string& key) -> Result<Tensor> {
      if (!v.value(side, json()).is_object() || !v[side].contains(key))
        return vector_error(pkg, name, std::string("no ") + side + " '" + key + "'");
      return pkg.read_tensor(v[side][key], "test_vectors." + name + "." + side + "." + key);
    };
    auto add = [&](const std::string& what, const Tensor& ref, const std::vector<double>& got, double peak) {
      const double db = psnr_db(ref.to_doubles(), got, peak);
      entries.push_back({name, what, db, min_db, db >= min_db});
    };
    auto add_exact = [&](const std::string& what, const Tensor& ref, const std::vector<float>& got) {
      const bool same = ref.dtype == DType::kFloat32 && ref.data.size() == got.size() * sizeof(float) &&
                        std::memcmp(ref.data.data(), got.data(), ref.data.size()) == 0;
      entries.push_back({name, what + " (bit-identical)", same ? 200.0 : 0.0, 200.0, same});
    };
    const bool seeded = v.value("seed", json()).is_number_unsigned();

    if (name == contract::NOISE_TEST_VECTOR) {
      // {"seed": N, "outputs": {"noise": float32 tensor}, "exact": true}: the generator, bit for bit.
      if (!seeded || v["outputs"].empty()) return vector_error(pkg, name, "needs an unsigned 'seed' and one output");
      const std::string key = v["outputs"].begin().key();
      auto ref = tensor("outputs", key);
      if (!ref.ok()) return ref.error();
      add_exact(key, ref.value(), portable_normal(v["seed"].get<uint64_t>(), size_t(ref->numel())));
    } else if (component == contract::PIPELINE_TEST_VECTOR) {
      if (VideoSize{info_.frames, info_.height, info_.width} != info_.sizes.at(0))
        return vector_error(pkg, name, "recorded at the package's default size; open the engine at that size to replay it");
      auto init = tensor("inputs", "initial_latents");
      if (!init.ok()) return init.error();
      if (seeded)  // the recorded start is the portable noise of the vector's seed
        add_exact("initial_latents", init.value(), portable_normal(v["seed"].get<uint64_t>(), size_t(init->numel())));
      const auto init_values = init->to_doubles();
      std::vector<float> latents(init_values.begin(), init_values.end()), final_latents;
      auto video = generate_from_latents(v.value("prompt", ""), latents, {}, &final_latents);
      if (!video.ok()) return video.error();
      auto ref_latents = tensor("outputs", "final_latents");
      if (!ref_latents.ok()) return ref_latents.error();
      add("final_latents", ref_latents.value(), std::vector<double>(final_latents.begin(), final_latents.end()), -1);
      if (v["outputs"].contains("frames")) {
        auto ref_frames = tensor("outputs", "frames");
        if (!ref_frames.ok()) return ref_frames.error();
        add("frames", ref_frames.value(), std::vector<double>(video->rgb.begin(), video->rgb.end()), 255.0);
      }
    } else {
      if (!v.value("method", json()).is_string()) return vector_error(pkg, name, "needs 'method'");
      const std::string method = v["method"].get<std::string>();
      auto in_names = io_names(pkg, component, method, "inputs");
      auto out_names = io_names(pkg, component, method, "outputs");
      if (!in_names.ok()) return in_names.error();
      if (!out_names.ok()) return out_names.error();
      std::vector<Tensor> inputs;
      for (const auto& in : in_names.value()) {
        auto t = tensor("inputs", in);
        if (!t.ok()) return t.error();
        inputs.push_back(std::move(t.value()));
      }
      if (component == names::kTextEncoder && v.contains("prompt") && v["prompt"].is_string()) {
        auto ids = tokenizer_.encode(v["prompt"].get<std::string>());
        if (!ids.ok()) return vector_error(pkg, name, ids.error().message);
        const auto recorded = inputs.at(0).to_doubles();
        entries.push_back({name, "tokenizer ids", 0, 0, std::vector<double>(ids->begin(), ids->end()) == recorded});
        entries.back().psnr_db = entries.back().passed ? 200.0 : 0.0;
        entries.back().min_psnr_db = 200.0;
      }
      auto outputs = run_method(component, method, inputs);
      if (!outputs.ok()) return outputs.error();
      for (size_t i = 0; i < out_names->size() && i < outputs->size(); ++i) {
        if (!v["outputs"].contains((*out_names)[i])) continue;
        auto ref = tensor("outputs", (*out_names)[i]);
        if (!ref.ok()) return ref.error();
        if (ref->numel() != (*outputs)[i].numel())
          return Error{ErrorCode::kShape, pkg.manifest_path() + ": test vector '" + name + "' output '" + (*out_names)[i] +
                                              "' has " + std::to_string(ref->numel()) + " values, the program gives " +
                                              std::to_string((*outputs)[i].numel())};
        if (exact) {
          const auto got = (*outputs)[i].to_doubles();
          add_exact((*out_names)[i], ref.value(), std::vector<float>(got.begin(), got.end()));
        } else {
          add((*out_names)[i], ref.value(), (*outputs)[i].to_doubles(), -1);
        }
      }
    }
  }
  return entries;
}

}  // namespace mvd
