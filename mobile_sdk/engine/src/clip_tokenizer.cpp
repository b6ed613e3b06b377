#include "clip_tokenizer.h"

#include <functional>
#include <queue>
#include <tuple>

#include "unicode.h"

using nlohmann::json;

namespace mvd {
namespace {

const std::u32string kSpecials[] = {U"<|startoftext|>", U"<|endoftext|>"};
const std::u32string kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
constexpr int64_t kMaxId = (int64_t(1) << 31) - 1;  // the text encoder takes int32 or int64 ids

bool starts_with(const std::u32string& s, size_t i, const std::u32string& prefix) {
  return s.compare(i, prefix.size(), prefix) == 0;
}

std::string utf8(const std::u32string& s) {
  std::string out;
  for (char32_t cp : s) unicode::append_utf8(cp, &out);
  return out;
}

enum class Kind { kSpace, kLetter, kNumber, kOther };

Kind kind(char32_t cp) {
  if (unicode::is_white_space(cp)) return Kind::kSpace;
  if (unicode::is_letter(cp)) return Kind::kLetter;
  return unicode::is_number(cp) ? Kind::kNumber : Kind::kOther;
}

// Step 1: NFC, each White_Space run -> one space, each character lower-cased by itself.
std::u32string normalize(const std::u32string& text) {
  std::u32string out;
  bool in_space = false;
  for (char32_t cp : unicode::nfc(text)) {
    const bool space = unicode::is_white_space(cp);
    if (space && !in_space) out.push_back(U' ');
    if (!space) unicode::append_lower(cp, &out);
    in_space = space;
  }
  return out;
}

// Step 2: the words of normalised text, scanning left to right.
std::vector<std::u32string> split_words(const std::u32string& t) {
  std::vector<std::u32string> words;
  for (size_t i = 0; i < t.size();) {
    bool matched = false;
    for (const auto& s : kSpecials) {
      if (!starts_with(t, i, s)) continue;
      words.insert(words.end(), {U"<|", s.substr(2, s.size() - 4), U"|>"});
      i += s.size();
      matched = true;
      break;
    }
    for (size_t c = 0; !matched && c < std::size(kContractions); ++c) {
      if (!starts_with(t, i, kContractions[c])) continue;
      words.push_back(kContractions[c]);
      i += kContractions[c].size();
      matched = true;
    }
    if (matched) continue;
    const Kind k = kind(t[i]);
    if (k == Kind::kSpace) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (k != Kind::kNumber)
      while (j < t.size() && kind(t[j]) == k) ++j;
    words.push_back(t.substr(i, j - i));
    i = j;
  }
  return words;
}

Error tokenizer_error(const std::string& path, const std::string& what) { return {ErrorCode::kPackage, path + ": " + what}; }

}  // namespace

Result<ClipBpe> ClipBpe::from_json(const json& t, const std::string& path) {
  ClipBpe bpe;
  if (!t.contains("unk_id") || !t["unk_id"].is_number_integer() || t["unk_id"].get<int64_t>() < 0 ||
      t["unk_id"].get<int64_t>() > kMaxId)
    return tokenizer_error(path, "missing or bad 'unk_id'");
  bpe.unk_id_ = t["unk_id"].get<int64_t>();
  if (t.value("end_of_word_suffix", json()) != "</w>") return tokenizer_error(path, "'end_of_word_suffix' must be \"</w>\"");
  const json& vocab = t.value("vocab", json());
  if (!vocab.is_object() || vocab.empty()) return tokenizer_error(path, "'vocab' must be a non-empty object");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > kMaxId)
      return tokenizer_error(path, "vocab entry " + json(it.key()).dump() + " is not an id in [0, 2^31)");
    bpe.vocab_[it.key()] = it.value().get<int64_t>();
    bpe.largest_id_ = std::max(bpe.largest_id_, it.value().get<int64_t>());
  }
  if (bpe.unk_id_ > bpe.largest_id_) return tokenizer_error(path, "unk_id is past the vocab's largest id");
  const json& merges = t.value("merges", json());
  if (!merges.is_array()) return tokenizer_error(path, "'merges' must be a list");
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string* m = merges[r].is_string() ? &merges[r].get_ref<const std::string&>() : nullptr;
    const size_t space = m == nullptr ? std::string::npos : m->find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m->size() || m->find(' ', space + 1) != std::string::npos)
      return tokenizer_error(path, "merges[" + std::to_string(r) + "] is not 'left right'");
    bpe.ranks_[*m] = int32_t(r);  // a repeated pair keeps its last index, as in the reference
  }
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes are themselves, the others 256, 257, ... in order.
  char32_t extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    unicode::append_utf8(printable ? char32_t(b) : extra++, &bpe.byte_chars_[size_t(b)]);
  }
  return bpe;
}

// Step 3: merge the adjacent pair of lowest rank (leftmost on ties) until none has a rank. A min-heap
// of (rank, left position) with stale entries skipped keeps long words O(n log n).
void ClipBpe::bpe(const std::u32string& word, std::vector<int64_t>* ids) const {
  struct Symbol {
    std::string text;
    int prev, next;
    uint32_t version;  // bumped when the symbol grows, so heap entries naming the old one are stale
  };
  std::vector<Symbol> syms;
  for (unsigned char b : utf8(word)) syms.push_back({byte_chars_[b], int(syms.size()) - 1, int(syms.size()) + 1, 0});
  syms.back().text += "</w>";
  syms.back().next = -1;
  using Entry = std::tuple<int32_t, int, int, uint32_t, uint32_t>;  // rank, left, right, their versions
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push_pair = [&](int left) {
    const int right = left < 0 ? -1 : syms[size_t(left)].next;
    if (right < 0) return;
    auto it = ranks_.find(syms[size_t(left)].text + " " + syms[size_t(right)].text);
    if (it != ranks_.end()) heap.emplace(it->second, left, right, syms[size_t(left)].version, syms[size_t(right)].version);
  };
  for (int i = 0; i < int(syms.size()); ++i) push_pair(i);
  std::vector<bool> alive(syms.size(), true);
  while (!heap.empty()) {
    const auto [rank, left, right, lv, rv] = heap.top();
    heap.pop();
    Symbol& l = syms[size_t(left)];
    const Symbol& r = syms[size_t(right)];
    if (!alive[size_t(left)] || !alive[size_t(right)] || l.next != right || l.version != lv || r.version != rv) continue;
    l.text += r.text;
    l.next = r.next;
    l.version++;
    alive[size_t(right)] = false;
    if (l.next >= 0) syms[size_t(l.next)].prev = left;
    push_pair(l.prev);
    push_pair(left);
  }
  for (int i = 0; i >= 0; i = syms[size_t(i)].next) {
    auto it = vocab_.find(syms[size_t(i)].text);
    ids->push_back(it == vocab_.end() ? unk_id_ : it->second);
  }
}

void ClipBpe::segment_ids(const std::u32string& segment, size_t limit, std::vector<int64_t>* ids) const {
  for (const auto& word : split_words(normalize(segment))) {
    if (ids->size() >= limit) return;  // later words would be cut anyway
    bpe(word, ids);
  }
}

Result<std::vector<int64_t>> ClipBpe::word_ids(const std::string& prompt, size_t limit) const {
  std::u32string text;
  size_t bad = 0;
  if (!unicode::decode_utf8(prompt, &text, &bad))
    return Error{ErrorCode::kInvalidArgument, "prompt is not valid UTF-8 (at byte " + std::to_string(bad) + ")"};
  std::vector<int64_t> ids;
  // Step 0: the special tokens' exact texts are their ids; the text between them is tokenized apart.
  for (size_t start = 0; start <= text.size() && ids.size() < limit;) {
    size_t hit = text.size();
    const std::u32string* special = nullptr;
    for (const auto& s : kSpecials) {
      const size_t at = text.find(s, start);
      if (at < hit) hit = at, special = &s;
    }
    segment_ids(text.substr(start, hit - start), limit, &ids);
    if (special == nullptr) break;
    auto it = vocab_.find(utf8(*special));
    ids.push_back(it == vocab_.end() ? unk_id_ : it->second);
    start = hit + special->size();
  }
  if (ids.size() > limit) ids.resize(limit);
  return ids;
}

}  // namespace mvd
