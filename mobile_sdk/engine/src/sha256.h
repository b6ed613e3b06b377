// SHA-256 (FIPS 180-4) of a file, for the manifest's checksums; no crypto library on every platform.
#pragma once

#include <string>

namespace mvd::detail {

// Lower-case hex digest, or "" when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace mvd::detail
