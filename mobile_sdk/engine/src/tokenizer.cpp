// tokenizer.json (mobile_sdk/contract/schemas/tokenizer.v*.schema.json): the byte tokenizer and CLIP's BPE.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "clip_tokenizer.h"
#include "mvd/contract_names.h"

using nlohmann::json;

namespace mvd {
namespace {

constexpr uintmax_t kMaxFileBytes = uintmax_t(64) << 20;  // SD's CLIP tokenizer.json is about 3 MB
constexpr int64_t kMaxLength = 100000;                    // the schema's bound

Error tokenizer_error(const std::string& path, const std::string& what) { return {ErrorCode::kPackage, path + ": " + what}; }

Result<json> read_json(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return tokenizer_error(path, "cannot read (missing or not readable)");
  if (size > kMaxFileBytes) return tokenizer_error(path, "is " + std::to_string(size) + " bytes, more than a tokenizer's 64 MiB");
  std::ifstream f(path, std::ios::binary);
  if (!f) return tokenizer_error(path, "cannot read (missing or not readable)");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return tokenizer_error(path, "not a JSON object (tokenizer)");
  return j;
}

}  // namespace

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  auto j = read_json(path);
  if (!j.ok()) return j.error();
  const json& t = j.value();
  const auto& versions = contract::TOKENIZER_READS_VERSIONS;
  const json version = t.value("version", json());
  if (t.value("format", json()) != "mobile-sdk-tokenizer" || !version.is_number_integer() ||
      std::find(versions.begin(), versions.end(), version.get<int64_t>()) == versions.end())
    return tokenizer_error(path, "not a mobile-sdk-tokenizer of a version this engine reads (format " +
                                     t.value("format", json()).dump() + ", version " + version.dump() + ")");
  const json type = t.value("type", json());
  if (type != contract::TOKENIZER_BYTE && !(type == contract::TOKENIZER_CLIP_BPE && version == 2))
    return tokenizer_error(path, "unknown tokenizer type " + type.dump() + " for version " + version.dump());
  Tokenizer tok;
  for (auto [key, field] : std::initializer_list<std::pair<const char*, int64_t*>>{
           {"pad_id", &tok.pad_id}, {"bos_id", &tok.bos_id}, {"eos_id", &tok.eos_id}, {"max_length", &tok.max_length}}) {
    if (!t.contains(key) || !t[key].is_number_integer() || t[key].get<int64_t>() < 0)
      return tokenizer_error(path, std::string("missing or bad '") + key + "'");
    *field = t[key].get<int64_t>();
  }
  if (tok.max_length < 2 || tok.max_length > kMaxLength)
    return tokenizer_error(path, "max_length must be in [2, " + std::to_string(kMaxLength) + "] (BOS and EOS)");
  if (type == contract::TOKENIZER_BYTE) {
    if (!t.contains("byte_offset") || !t["byte_offset"].is_number_integer() || t["byte_offset"].get<int64_t>() < 0)
      return tokenizer_error(path, "missing or bad 'byte_offset'");
    tok.byte_offset = t["byte_offset"].get<int64_t>();
    return tok;
  }
  auto bpe = ClipBpe::from_json(t, path);
  if (!bpe.ok()) return bpe.error();
  for (auto [key, id] : {std::pair{"pad_id", tok.pad_id}, {"bos_id", tok.bos_id}, {"eos_id", tok.eos_id}})
    if (id > bpe->largest_id())
      return tokenizer_error(path, std::string(key) + " " + std::to_string(id) + " is past the vocab's largest id " +
                                       std::to_string(bpe->largest_id()));
  tok.clip = std::make_shared<const ClipBpe>(std::move(bpe.value()));
  return tok;
}

Result<std::vector<int64_t>> Tokenizer::encode(const std::string& prompt) const {
  const size_t body = size_t(max_length - 2);
  std::vector<int64_t> ids{bos_id};
  if (clip) {
    auto words = clip->word_ids(prompt, body);
    if (!words.ok()) return words.error();
    ids.insert(ids.end(), words->begin(), words->end());
  } else {
    for (size_t i = 0; i < std::min(prompt.size(), body); ++i) ids.push_back(byte_offset + static_cast<unsigned char>(prompt[i]));
  }
  ids.push_back(eos_id);
  ids.resize(size_t(max_length), pad_id);
  return ids;
}

}  // namespace mvd
