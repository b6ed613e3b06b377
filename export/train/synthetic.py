"""Seeded synthetic videos: one simple shape of one colour moving in one direction over a plain background.

The vocabulary is explicit (COLORS, SHAPES, DIRECTIONS) and every clip comes with its prompt,
"a red circle moving right". Used to train the demo model, as the supernet's validation set, and by
the quality check, which inverts it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUND = (30, 30, 38)
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ClipSpec:
    color: str
    shape: str
    direction: str
    radius: float  # pixels
    speed: float  # pixels per frame
    start: tuple[float, float]  # centre (x, y) at frame 0, pixels

    @property
    def prompt(self) -> str:
        return prompt_for(self.color, self.shape, self.direction)


def prompt_for(color: str, shape: str, direction: str) -> str:
    return f"a {color} {shape} moving {direction}"


def all_prompts() -> list[tuple[str, str, str]]:
    """Every (color, shape, direction) the vocabulary allows, in a fixed order."""
    return list(itertools.product(COLORS, SHAPES, DIRECTIONS))


def sample_spec(rng: np.random.Generator, height: int, width: int, num_frames: int,
                color: str | None = None, shape: str | None = None, direction: str | None = None) -> ClipSpec:
    """Random size, speed and start, chosen so the shape stays fully inside the frame for the whole clip."""
    color = color or rng.choice(list(COLORS))
    shape = shape or rng.choice(SHAPES)
    direction = direction or rng.choice(list(DIRECTIONS))
    scale = min(height, width) / 64.0
    radius = rng.uniform(7.0, 10.0) * scale
    speed = rng.uniform(2.5, 4.0) * scale
    dx, dy = DIRECTIONS[direction]
    travel = speed * (num_frames - 1)
    margin = radius + 1.0

    def axis_start(size: int, d: int) -> float:
        if d == 0:
            return rng.uniform(margin, size - margin)
        lo, hi = margin, size - margin - travel
        start = rng.uniform(lo, max(lo, hi))
        return start if d > 0 else size - start

    return ClipSpec(str(color), str(shape), str(direction), radius, speed, (axis_start(width, dx), axis_start(height, dy)))


def shape_mask(shape: str, cx: float, cy: float, radius: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], [H, W], supersampled only inside the shape's bounding box."""
    out = np.zeros((height, width), dtype=np.float32)
    reach = radius * 1.2 + 1
    x0, x1 = max(0, int(cx - reach)), min(width, int(np.ceil(cx + reach)))
    y0, y1 = max(0, int(cy - reach)), min(height, int(np.ceil(cy + reach)))
    if x0 >= x1 or y0 >= y1:
        return out
    s = SUPERSAMPLE
    xs = x0 + (np.arange((x1 - x0) * s) + 0.5) / s - cx
    ys = y0 + (np.arange((y1 - y0) * s) + 0.5) / s - cy
    x, y = np.meshgrid(xs, ys)
    if shape == "circle":
        inside = x * x + y * y <= radius * radius
    elif shape == "square":
        half = radius * 0.85
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "triangle":  # upward-pointing, circumradius ~ radius * 1.15
        r = radius * 1.15
        inside = (y <= r * 0.5) & (np.sqrt(3) * x - y <= r) & (-np.sqrt(3) * x - y <= r)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    out[y0:y1, x0:x1] = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    return out


def render(spec: ClipSpec, height: int, width: int, num_frames: int) -> np.ndarray:
    """uint8 frames [T, H, W, 3]."""
    dx, dy = DIRECTIONS[spec.direction]
    bg = np.array(BACKGROUND, dtype=np.float32)
    fg = np.array(COLORS[spec.color], dtype=np.float32)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        cx, cy = spec.start[0] + dx * spec.speed * t, spec.start[1] + dy * spec.speed * t
        a = shape_mask(spec.shape, cx, cy, spec.radius, height, width)[..., None]
        frames[t] = np.round(bg * (1 - a) + fg * a).astype(np.uint8)
    return frames


class SyntheticVideos:
    """A reproducible stream of (frames, prompt, spec): item i of seed s is always the same clip."""

    def __init__(self, height: int = 64, width: int = 64, num_frames: int = 8, seed: int = 0):
        self.height, self.width, self.num_frames, self.seed = height, width, num_frames, seed

    def spec(self, index: int) -> ClipSpec:
        return sample_spec(np.random.default_rng([self.seed, index]), self.height, self.width, self.num_frames)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str, ClipSpec]:
        spec = self.spec(index)
        return render(spec, self.height, self.width, self.num_frames), spec.prompt, spec

    def batch(self, start: int, size: int) -> tuple[np.ndarray, list[str], list[ClipSpec]]:
        items = [self[i] for i in range(start, start + size)]
        return np.stack([f for f, _, _ in items]), [p for _, p, _ in items], [s for _, _, s in items]
