"""Does a generated clip show its prompt? Colour, shape and direction read back from the frames.

The check inverts the synthetic data: the background is the clip's median colour; the object is what
differs from it; its mean colour is matched to the palette, its fill of its bounding box tells the
shape (square ~1, circle ~pi/4, triangle ~1/2), and its centroid's path gives the direction.
Temporal consistency: how much the background flickers between frames, and how stable the object's
area is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from export.train.synthetic import COLORS, DIRECTIONS

SHAPE_FILL = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}
OBJECT_THRESHOLD = 60.0  # RGB distance from the background
MIN_MOTION_PX = 1.5


@dataclass
class ClipReading:
    color: str | None
    shape: str | None
    direction: str | None
    displacement_px: tuple[float, float]
    background_flicker: float  # mean |frame-to-frame change| of background pixels, 0..255
    area_cv: float  # std / mean of the object's area over frames


def read_clip(frames: np.ndarray) -> ClipReading:
    """frames: uint8 [T, H, W, 3]."""
    f = frames.astype(np.float32)
    bg = np.median(f.reshape(-1, 3), axis=0)
    mask = np.linalg.norm(f - bg, axis=-1) > OBJECT_THRESHOLD  # [T, H, W]
    areas = mask.sum(axis=(1, 2)).astype(np.float32)
    still = ~(mask[1:] | mask[:-1])
    flicker = float(np.abs(f[1:] - f[:-1]).mean(axis=-1)[still].mean()) if still.any() else 0.0
    if (areas < 4).any():
        return ClipReading(None, None, None, (0.0, 0.0), flicker, float("inf"))

    mean_rgb = f[mask].mean(axis=0)
    color = min(COLORS, key=lambda c: float(np.linalg.norm(mean_rgb - np.array(COLORS[c]))))

    fills = []
    centroids = []
    for m in mask:
        ys, xs = np.nonzero(m)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fills.append(len(xs) / box)
        centroids.append((xs.mean(), ys.mean()))
    fill = float(np.median(fills))
    shape = min(SHAPE_FILL, key=lambda s: abs(SHAPE_FILL[s] - fill))

    c = np.array(centroids)
    k = max(1, len(c) // 4)
    dx, dy = c[-k:].mean(axis=0) - c[:k].mean(axis=0)
    direction = None
    if max(abs(dx), abs(dy)) >= MIN_MOTION_PX:
        step = (int(np.sign(dx)), 0) if abs(dx) >= abs(dy) else (0, int(np.sign(dy)))
        direction = next(d for d, v in DIRECTIONS.items() if v == step)
    return ClipReading(color, shape, direction, (float(dx), float(dy)), flicker, float(areas.std() / areas.mean()))


def score_clips(clips: list[np.ndarray], targets: list[tuple[str, str, str]]) -> dict:
    """Accuracies over (color, shape, direction) targets, and mean temporal-consistency figures."""
    readings = [read_clip(c) for c in clips]
    hits = {"color": [], "shape": [], "direction": [], "color_and_direction": [], "all": []}
    for r, (color, shape, direction) in zip(readings, targets):
        hits["color"].append(r.color == color)
        hits["shape"].append(r.shape == shape)
        hits["direction"].append(r.direction == direction)
        hits["color_and_direction"].append(r.color == color and r.direction == direction)
        hits["all"].append(r.color == color and r.shape == shape and r.direction == direction)
    finite_cv = [r.area_cv for r in readings if np.isfinite(r.area_cv)]
    return {
        "clips": len(clips),
        **{f"{k}_accuracy": float(np.mean(v)) for k, v in hits.items()},
        "background_flicker_mean": float(np.mean([r.background_flicker for r in readings])),
        "object_area_cv_mean": float(np.mean(finite_cv)) if finite_cv else float("nan"),
        "no_object_found": sum(1 for r in readings if r.color is None),
        "readings": [asdict(r) for r in readings],
    }
