// The contract's components under the engine's own identifiers (mvd/contract_names.h is generated
// from mobile_sdk/contract/names.json); the static_asserts pin the order this file relies on.
#pragma once

#include "mvd/contract_names.h"

namespace mvd::names {

constexpr bool same(const char* a, const char* b) { return *a == *b && (*a == '\0' || same(a + 1, b + 1)); }

inline constexpr const char* kTextEncoder = contract::COMPONENTS[0];
inline constexpr const char* kUNet = contract::COMPONENTS[1];
inline constexpr const char* kDecoder = contract::COMPONENTS[2];
static_assert(same(kTextEncoder, "text_encoder") && same(kUNet, "unet") && same(kDecoder, "vae_decoder"),
              "names.json reordered its components");
inline constexpr const char* kTarget = contract::EXECUTORCH_TARGET;

}  // namespace mvd::names
