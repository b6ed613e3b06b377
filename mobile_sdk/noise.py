"""The package's portable noise generator: a seed gives bit-identical float32 noise in Python, C++ and
Swift, so `mobile-sdk generate --package P --seed 7`, the native engine and the iOS package make the
same video.

Generator `splitmix64-boxmuller-v1` (the contract's `noise` entry, mobile_sdk/contract/names.json):

  draw(seed, k) = splitmix64 output k: mix(seed + (k + 1) * 0x9E3779B97F4A7C15 mod 2^64), where
                  mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^ z >> 31
  value i (C order over the latent shape) uses a = draw(seed, 2i), b = draw(seed, 2i + 1):
      u1 = ((a >> 11) + 1) * 2^-53 in (0, 1],  u2 = (b >> 11) * 2^-53 in [0, 1)
      z  = sqrt(-2 ln u1) * cos(2 pi u2), in float64, rounded to float32 (round to nearest even)

ln and cos are not taken from a math library (libms differ in the last bit); they are evaluated with
+, -, *, / and sqrt only, in the fixed order below, which IEEE 754 makes identical everywhere as long
as the compiler fuses no multiply-add (C++: -ffp-contract=off; Swift and numpy never fuse):

  ln x:  m, e = frexp(x) (m in [0.5, 1)); if m < SQRT_HALF: m = 2m, e = e - 1
         s = (m - 1) / (m + 1); s2 = s * s; p = LN_COEF[11]; for k = 10..0: p = p * s2 + LN_COEF[k]
         ln x = e * LN2 + 2 * s * p, where LN_COEF[k] = 1 / (2k + 1)
  cos(2 pi u):  t = 4u; n = floor(t + 0.5); r = t - n; a = r * HALF_PI; a2 = a * a
         c = Horner over COS_COEF[9..0] in a2, COS_COEF[k] = (-1)^k / (2k)!
         s = a * Horner over SIN_COEF[9..0] in a2, SIN_COEF[k] = (-1)^k / (2k + 1)!
         n mod 4 = 0: c, 1: -s, 2: -c, 3: s
Every coefficient is `1.0 / d` in float64 with d an exactly representable integer (factorials up to 19!
are exact in float64), negated for odd k.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError

GENERATOR = "splitmix64-boxmuller-v1"
GAMMA = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
SQRT_HALF = 0.7071067811865476
LN2 = 0.6931471805599453
HALF_PI = 1.5707963267948966
LN_COEF = [1.0 / (2 * k + 1) for k in range(12)]
COS_COEF = [(-1.0 if k % 2 else 1.0) / float(math.factorial(2 * k)) for k in range(10)]
SIN_COEF = [(-1.0 if k % 2 else 1.0) / float(math.factorial(2 * k + 1)) for k in range(10)]
MAX_SEED = (1 << 64) - 1


def check_seed(seed: int, where: str = "seed") -> int:
    """Seeds are unsigned 64-bit integers, the same range in every language."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"{where} must be an integer in [0, 2^64 - 1], got {seed!r}")
    return int(seed)


def _draws(seed: int, counters: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (counters + np.uint64(1)) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        return z ^ (z >> np.uint64(31))


def _ln(x: np.ndarray) -> np.ndarray:
    m, e = np.frexp(x)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = (e - low).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, LN_COEF[-1])
    for c in reversed(LN_COEF[:-1]):
        p = p * s2 + c
    return e * LN2 + 2.0 * s * p


def _cos_turns(u: np.ndarray) -> np.ndarray:
    """cos(2 pi u) for u in [0, 1)."""
    t = u * 4.0
    n = np.floor(t + 0.5)
    a = (t - n) * HALF_PI
    a2 = a * a
    c = np.full_like(a, COS_COEF[-1])
    for k in reversed(COS_COEF[:-1]):
        c = c * a2 + k
    s = np.full_like(a, SIN_COEF[-1])
    for k in reversed(SIN_COEF[:-1]):
        s = s * a2 + k
    s = a * s
    quadrant = n.astype(np.int64) % 4
    return np.select([quadrant == 0, quadrant == 1, quadrant == 2], [c, -s, -c], s)


def portable_normal(seed: int, shape: tuple[int, ...] | list[int], offset: int = 0) -> np.ndarray:
    """float32 standard-normal noise of `shape` (C order) for `seed`; `offset` skips that many values."""
    seed = check_seed(seed)
    count = int(np.prod(shape)) if len(shape) else 1
    index = np.arange(offset, offset + count, dtype=np.uint64)
    a, b = _draws(seed, index * np.uint64(2)), _draws(seed, index * np.uint64(2) + np.uint64(1))
    u1 = ((a >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0 ** -53
    u2 = (b >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    z = np.sqrt(-2.0 * _ln(u1)) * _cos_turns(u2)
    return z.astype(np.float32).reshape(shape)


def noise_spec() -> dict:
    """The manifest's `noise` entry: what apps implement to turn a seed into the initial latents."""
    return {"generator": GENERATOR, "dtype": "float32", "order": "C order over the latent shape [1, C, T, h, w]",
            "seed_range": [0, MAX_SEED], "documentation": "mobile_sdk/noise.py"}
