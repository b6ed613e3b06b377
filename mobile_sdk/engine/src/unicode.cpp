#include "unicode.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include "unicode_tables.h"

namespace mvd::unicode {
namespace {

// Hangul syllables are (de)composed by arithmetic (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

template <size_t N>
bool in_ranges(const Range (&table)[N], char32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp, [](char32_t c, const Range& r) { return c < r.first; });
  return it != std::begin(table) && cp <= std::prev(it)->last;
}

uint32_t combining_class(char32_t cp) {
  auto it = std::upper_bound(std::begin(kCombiningClass), std::end(kCombiningClass), cp,
                             [](char32_t c, const ClassRange& r) { return c < r.first; });
  return it != std::begin(kCombiningClass) && cp <= std::prev(it)->last ? std::prev(it)->ccc : 0;
}

void decompose(char32_t cp, std::u32string* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), cp,
                             [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == std::end(kDecomposition) || it->cp != cp) {
    out->push_back(cp);
    return;
  }
  decompose(it->first, out);  // depth is bounded by the data (a few levels)
  if (it->second != 0) decompose(it->second, out);
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), std::make_pair(a, b),
                             [](const Composition& c, const std::pair<char32_t, char32_t>& k) {
                               return c.first != k.first ? c.first < k.first : c.second < k.second;
                             });
  return it != std::end(kComposition) && it->first == a && it->second == b ? it->composite : 0;
}

}  // namespace

bool decode_utf8(const std::string& text, std::u32string* out, size_t* bad_offset) {
  out->clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = s[i];
    size_t len = 0;
    char32_t cp = 0, min = 0;
    if (b < 0x80) len = 1, cp = b;
    else if ((b & 0xE0) == 0xC0) len = 2, cp = b & 0x1F, min = 0x80;
    else if ((b & 0xF0) == 0xE0) len = 3, cp = b & 0x0F, min = 0x800;
    else if ((b & 0xF8) == 0xF0) len = 4, cp = b & 0x07, min = 0x10000;
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (!ok || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      *bad_offset = i;
      return false;
    }
    out->push_back(cp);
    i += len;
  }
  return true;
}

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

// UAX #15: full canonical decomposition, canonical ordering, then canonical composition.
std::u32string nfc(const std::u32string& text) {
  std::u32string d;
  d.reserve(text.size());
  for (char32_t cp : text) decompose(cp, &d);
  std::vector<uint32_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
  for (size_t i = 0; i < d.size();) {  // stable sort of each run of non-starters by class
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc[j] != 0) ++j;
    std::vector<std::pair<uint32_t, char32_t>> run;
    for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], d[k]);
    std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = i; k < j; ++k) ccc[k] = run[k - i].first, d[k] = run[k - i].second;
    i = j;
  }
  if (d.empty()) return d;
  std::u32string out(1, d[0]);
  size_t starter = 0;
  uint32_t last_class = ccc[0] == 0 ? 0 : 256;  // nothing composes with a leading non-starter
  for (size_t i = 1; i < d.size(); ++i) {
    // Blocked when a character between the starter and this one has class 0 or >= this one's.
    const char32_t composite = compose(out[starter], d[i]);
    if (composite != 0 && (last_class < ccc[i] || last_class == 0)) {
      out[starter] = composite;
      continue;
    }
    if (ccc[i] == 0) starter = out.size();
    last_class = ccc[i];
    out.push_back(d[i]);
  }
  return out;
}

void append_lower(char32_t cp, std::u32string* out) {
  auto multi = std::lower_bound(std::begin(kLowerMulti), std::end(kLowerMulti), cp,
                                [](const LowerMulti& m, char32_t c) { return m.cp < c; });
  if (multi != std::end(kLowerMulti) && multi->cp == cp) {
    for (uint32_t c : multi->lower)
      if (c != 0) out->push_back(c);
    return;
  }
  auto it = std::upper_bound(std::begin(kLower), std::end(kLower), cp,
                             [](char32_t c, const LowerRun& r) { return c < r.first; });
  if (it != std::begin(kLower)) {
    const LowerRun& r = *std::prev(it);
    if (cp < r.first + r.count * r.stride && (cp - r.first) % r.stride == 0) {
      out->push_back(char32_t(int64_t(cp) + r.delta));
      return;
    }
  }
  out->push_back(cp);
}

bool is_letter(char32_t cp) { return in_ranges(kLetter, cp); }
bool is_number(char32_t cp) { return in_ranges(kNumber, cp); }
bool is_white_space(char32_t cp) { return in_ranges(kWhiteSpace, cp); }

}  // namespace mvd::unicode
