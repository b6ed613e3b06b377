import numpy as np
import pytest

from export.train.quality import read_clip, score_clips
from export.train.synthetic import COLORS, DIRECTIONS, SHAPES, SyntheticVideos, all_prompts, render, sample_spec


def test_clips_are_reproducible_and_prompted():
    data = SyntheticVideos(64, 64, 8, seed=3)
    a, prompt, spec = data[5]
    b, _, _ = data[5]
    assert a.shape == (8, 64, 64, 3) and a.dtype == np.uint8
    assert (a == b).all()
    assert prompt == f"a {spec.color} {spec.shape} moving {spec.direction}"
    assert not (data[6][0] == a).all()


def test_vocabulary_is_explicit():
    assert len(all_prompts()) == len(COLORS) * len(SHAPES) * len(DIRECTIONS) == 60


@pytest.mark.parametrize("size", [(64, 64, 8), (32, 48, 6)])
def test_quality_check_reads_every_combination_of_real_clips(size):
    """On ground-truth clips the check must be right: it is the yardstick for the trained models."""
    h, w, t = size
    rng = np.random.default_rng(0)
    clips, targets = [], []
    for color, shape, direction in all_prompts():
        spec = sample_spec(rng, h, w, t, color, shape, direction)
        clips.append(render(spec, h, w, t))
        targets.append((color, shape, direction))
    scores = score_clips(clips, targets)
    assert scores["color_accuracy"] == 1.0
    assert scores["direction_accuracy"] == 1.0
    assert scores["shape_accuracy"] >= 0.95 if h == 64 else scores["shape_accuracy"] >= 0.8
    assert scores["background_flicker_mean"] < 0.5  # only anti-aliased edges below the object threshold


def test_quality_check_rejects_noise_and_static_clips():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    assert score_clips([noise], [("red", "circle", "left")])["color_and_direction_accuracy"] == 0.0
    spec = sample_spec(rng, 64, 64, 8, "red", "circle", "left")
    static = np.repeat(render(spec, 64, 64, 1), 8, axis=0)
    assert read_clip(static).direction is None
