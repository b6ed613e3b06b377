// splitmix64-boxmuller-v1, step for step as mobile_sdk/noise.py's docstring specifies: float64,
// only + - * / sqrt, frexp and floor (exact everywhere), no libm log/cos, and no fused multiply-add
// (the build passes -ffp-contract=off), so every platform gets the same bits.
#include <cmath>
#include <cstdint>
#include <vector>

#include "mvd/engine.h"

namespace mvd {
namespace {

constexpr uint64_t GAMMA = 0x9E3779B97F4A7C15ull, MIX1 = 0xBF58476D1CE4E5B9ull, MIX2 = 0x94D049BB133111EBull;
constexpr double SQRT_HALF = 0.7071067811865476, LN2 = 0.6931471805599453, HALF_PI = 1.5707963267948966;
constexpr double TWO_M53 = 1.0 / 9007199254740992.0;  // 2^-53, exact

// Coefficients 1/d with d an exact integer in float64, as the Python side computes them.
struct Coefficients {
  double ln[12], cos[10], sin[10];
  Coefficients() {
    for (int k = 0; k < 12; ++k) ln[k] = 1.0 / double(2 * k + 1);
    double fact = 1.0;  // (2k)! then (2k+1)!, exact up to 19!
    for (int k = 0; k < 10; ++k) {
      if (k > 0) fact *= double(2 * k - 1) * double(2 * k);
      cos[k] = (k % 2 ? -1.0 : 1.0) / fact;
      sin[k] = (k % 2 ? -1.0 : 1.0) / (fact * double(2 * k + 1));
    }
  }
};
const Coefficients C;

inline uint64_t draw(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * GAMMA;
  z = (z ^ (z >> 30)) * MIX1;
  z = (z ^ (z >> 27)) * MIX2;
  return z ^ (z >> 31);
}

inline double ln(double x) {
  int e = 0;
  double m = std::frexp(x, &e);
  if (m < SQRT_HALF) {
    m = m * 2.0;
    e -= 1;
  }
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double p = C.ln[11];
  for (int k = 10; k >= 0; --k) p = p * s2 + C.ln[k];
  return double(e) * LN2 + 2.0 * s * p;
}

inline double cos_turns(double u) {  // cos(2 pi u), u in [0, 1)
  const double t = u * 4.0, n = std::floor(t + 0.5);
  const double a = (t - n) * HALF_PI, a2 = a * a;
  double c = C.cos[9], s = C.sin[9];
  for (int k = 8; k >= 0; --k) c = c * a2 + C.cos[k];
  for (int k = 8; k >= 0; --k) s = s * a2 + C.sin[k];
  s = a * s;
  switch (static_cast<int64_t>(n) % 4) {
    case 0: return c;
    case 1: return -s;
    case 2: return -c;
    default: return s;
  }
}

}  // namespace

std::vector<float> portable_normal(uint64_t seed, size_t count, uint64_t offset) {
  std::vector<float> out(count);
  for (size_t j = 0; j < count; ++j) {
    const uint64_t i = offset + j;
    const uint64_t a = draw(seed, 2 * i), b = draw(seed, 2 * i + 1);
    const double u1 = double((a >> 11) + 1) * TWO_M53, u2 = double(b >> 11) * TWO_M53;
    out[j] = static_cast<float>(std::sqrt(-2.0 * ln(u1)) * cos_turns(u2));
  }
  return out;
}

}  // namespace mvd
