// The Unicode operations of the CLIP tokenizer, over the generated tables (unicode_tables.h): UTF-8,
// NFC, per-character full lower-case mapping, the letter/number categories and White_Space. No ICU.
#pragma once

#include <cstdint>
#include <string>

namespace mvd::unicode {

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). On failure, false and
// `bad_offset` is the byte offset of the first invalid sequence.
bool decode_utf8(const std::string& text, std::u32string* out, size_t* bad_offset);
void append_utf8(char32_t cp, std::string* out);

std::u32string nfc(const std::u32string& text);
void append_lower(char32_t cp, std::u32string* out);  // full mapping, no context rules
bool is_letter(char32_t cp);                          // general category L*
bool is_number(char32_t cp);                          // general category N*
bool is_white_space(char32_t cp);                     // the White_Space property

}  // namespace mvd::unicode
