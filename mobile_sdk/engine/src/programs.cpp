#include "programs.h"

#include <executorch/extension/tensor/tensor.h>

#include <cstdio>
#include <cstring>

namespace mvd {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::EValue;
using executorch::runtime::Program;

namespace {

Result<DType> from_scalar_type(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return DType::kFloat32;
    case ScalarType::Half: return DType::kFloat16;
    case ScalarType::Long: return DType::kInt64;
    case ScalarType::Int: return DType::kInt32;
    case ScalarType::Byte: return DType::kUInt8;
    default: return Error{ErrorCode::kShape, "unsupported tensor dtype (ScalarType " + std::to_string(int(t)) + ")"};
  }
}

ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::kFloat32: return ScalarType::Float;
    case DType::kFloat16: return ScalarType::Half;
    case DType::kInt64: return ScalarType::Long;
    case DType::kInt32: return ScalarType::Int;
    case DType::kUInt8: return ScalarType::Byte;
  }
  return ScalarType::Float;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string et_error(executorch::runtime::Error e) { return "ExecuTorch error " + std::to_string(int(e)); }

}  // namespace

Status check_pte_header(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Error{ErrorCode::kProgram, path + ": cannot read"};
  unsigned char head[8] = {0};
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  const bool ok = n == sizeof head && head[4] == 'E' && head[5] == 'T' && head[6] >= '0' && head[6] <= '9' &&
                  head[7] >= '0' && head[7] <= '9';
  if (!ok) return Error{ErrorCode::kProgram, path + ": not an ExecuTorch program (no 'ET..' flatbuffer identifier)"};
  return {};
}

Result<std::unique_ptr<Module>> open_module(const std::string& path) {
  if (auto s = check_pte_header(path); !s.ok()) return s.error();
  auto module = std::make_unique<Module>(path, Module::LoadMode::Mmap);
  const auto err = module->load(Program::Verification::InternalConsistency);
  if (err != executorch::runtime::Error::Ok)
    return Error{ErrorCode::kProgram, path + ": ExecuTorch cannot load this program (" + et_error(err) + ")"};
  return module;
}

Result<std::unique_ptr<Programs>> Programs::open(
    const std::map<std::string, std::string>& files,
    const std::map<std::string, std::map<std::string, std::vector<TensorSpec>>>& methods) {
  auto out = std::unique_ptr<Programs>(new Programs());
  for (const auto& [component, path] : files) {
    auto module = open_module(path);
    if (!module.ok()) return module.error();
    auto names = module.value()->method_names();
    if (!names.ok()) return Error{ErrorCode::kProgram, path + ": cannot list methods (" + et_error(names.error()) + ")"};
    out->programs_[component] = {path, std::move(module.value())};
    for (const auto& [method, specs] : methods.at(component)) {
      if (names->count(method) == 0) {
        std::string have;
        for (const auto& n : *names) have += (have.empty() ? "" : ", ") + n;
        return Error{ErrorCode::kMissingMethod, path + ": no method '" + method + "' (the program has: " + have + ")"};
      }
      auto declared = out->input_specs(component, method);
      if (!declared.ok()) return declared.error();
      if (declared->size() != specs.size())
        return Error{ErrorCode::kShape, path + ": method '" + method + "' takes " + std::to_string(declared->size()) +
                                            " inputs, the manifest lists " + std::to_string(specs.size())};
      for (size_t i = 0; i < specs.size(); ++i) {
        const auto& d = (*declared)[i];
        if (d.shape != specs[i].shape || d.dtype != specs[i].dtype)
          return Error{ErrorCode::kShape, path + ": method '" + method + "' input " + std::to_string(i) + " (" + specs[i].name +
                                              ") is " + dtype_name(d.dtype) + " " + shape_str(d.shape) + ", the manifest says " +
                                              dtype_name(specs[i].dtype) + " " + shape_str(specs[i].shape)};
      }
      const auto err = out->programs_[component].module->load_method(method);
      if (err != executorch::runtime::Error::Ok)
        return Error{ErrorCode::kProgram, path + ": cannot load method '" + method + "' (" + et_error(err) + ")"};
    }
  }
  return out;
}

Result<std::vector<TensorSpec>> Programs::input_specs(const std::string& component, const std::string& method) {
  auto it = programs_.find(component);
  if (it == programs_.end()) return Error{ErrorCode::kInvalidArgument, "no component '" + component + "'"};
  auto meta = it->second.module->method_meta(method);
  if (!meta.ok()) return Error{ErrorCode::kMissingMethod, it->second.path + ": no method '" + method + "'"};
  std::vector<TensorSpec> specs;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto tag = meta->input_tag(i);
    auto info = meta->input_tensor_meta(i);
    if (!tag.ok() || *tag != executorch::runtime::Tag::Tensor || !info.ok())
      return Error{ErrorCode::kShape, it->second.path + ": method '" + method + "' input " + std::to_string(i) + " is not a tensor"};
    auto dtype = from_scalar_type(info->scalar_type());
    if (!dtype.ok()) return Error{ErrorCode::kShape, it->second.path + ": method '" + method + "': " + dtype.error().message};
    specs.push_back({"", dtype.value(), std::vector<int64_t>(info->sizes().begin(), info->sizes().end())});
  }
  return specs;
}

Result<std::vector<Tensor>> Programs::run(const std::string& component, const std::string& method,
                                          const std::vector<Tensor>& inputs) {
  auto specs = input_specs(component, method);
  if (!specs.ok()) return specs.error();
  const std::string& path = programs_[component].path;
  if (specs->size() != inputs.size())
    return Error{ErrorCode::kShape, path + ": method '" + method + "' takes " + std::to_string(specs->size()) + " inputs, got " +
                                        std::to_string(inputs.size())};
  std::vector<executorch::extension::TensorPtr> holders;
  std::vector<EValue> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (t.shape != (*specs)[i].shape || t.dtype != (*specs)[i].dtype)
      return Error{ErrorCode::kShape, path + ": method '" + method + "' input " + std::to_string(i) + " must be " +
                                          dtype_name((*specs)[i].dtype) + " " + shape_str((*specs)[i].shape) + ", got " +
                                          dtype_name(t.dtype) + " " + shape_str(t.shape)};
    std::vector<executorch::aten::SizesType> sizes(t.shape.begin(), t.shape.end());
    // The runtime only reads inputs; the const_cast is the from_blob API's.
    holders.push_back(executorch::extension::from_blob(const_cast<uint8_t*>(t.data.data()), sizes, to_scalar_type(t.dtype)));
  }
  for (auto& h : holders) values.emplace_back(h);
  auto result = programs_[component].module->execute(method, values);
  if (!result.ok())
    return Error{ErrorCode::kRuntime, path + ": method '" + method + "' failed (" + et_error(result.error()) + ")"};
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < result->size(); ++i) {
    const EValue& v = (*result)[i];
    if (!v.isTensor()) return Error{ErrorCode::kShape, path + ": method '" + method + "' output " + std::to_string(i) + " is not a tensor"};
    const auto& et = v.toTensor();
    auto dtype = from_scalar_type(et.scalar_type());
    if (!dtype.ok()) return Error{ErrorCode::kShape, path + ": method '" + method + "' output: " + dtype.error().message};
    Tensor out;
    out.dtype = dtype.value();
    out.shape.assign(et.sizes().begin(), et.sizes().end());
    out.data.resize(et.nbytes());
    std::memcpy(out.data.data(), et.const_data_ptr(), et.nbytes());
    outputs.push_back(std::move(out));
  }
  return outputs;
}

}  // namespace mvd
