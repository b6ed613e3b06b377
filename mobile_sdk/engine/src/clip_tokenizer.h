// CLIP's byte-level BPE (tokenizer.json type clip_bpe), exactly as the tokenizer.v2 schema specifies it;
// the Python reference is mobile_sdk/clip_tokenizer.py.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mvd/engine.h"

namespace mvd {

class ClipBpe {
 public:
  // vocab, merges and unk_id of a parsed tokenizer.json; errors name `path`.
  static Result<ClipBpe> from_json(const nlohmann::json& t, const std::string& path);
  int64_t largest_id() const { return largest_id_; }
  // The ids of the prompt's words (steps 0 to 3), at most `limit` of them.
  Result<std::vector<int64_t>> word_ids(const std::string& prompt, size_t limit) const;

 private:
  void bpe(const std::u32string& word, std::vector<int64_t>* ids) const;
  void segment_ids(const std::u32string& segment, size_t limit, std::vector<int64_t>* ids) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int32_t> ranks_;  // "left right" -> its index in merges
  std::array<std::string, 256> byte_chars_;          // GPT-2's bytes_to_unicode, as UTF-8
  int64_t unk_id_ = 0, largest_id_ = 0;
};

}  // namespace mvd
