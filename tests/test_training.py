"""Tiny runs of the training loops: they must learn, resume exactly, and produce loadable models."""
import json

import pytest
import torch

from export.train.common import ClipStream
from export.train.loop import Checkpointer
from export.train.run import run_training, ship
from export.train.distill import DistillConfig
from export.train.teacher import TeacherTrainConfig
from export.train.vae import VAETrainConfig, train_vae
from mobile_sdk.pipeline import VideoPipeline


def test_vae_training_reduces_the_loss(tmp_path, tiny_config):
    report = train_vae(tiny_config, tmp_path, VAETrainConfig(steps=60, lr=2e-3), progress=False)
    state = json.loads((tmp_path / "checkpoint/state.json").read_text())["state"]
    rec = state["history"]["rec"]
    assert sum(rec[-10:]) / 10 < 0.7 * sum(rec[:10]) / 10
    assert report["scaling_factor"] > 0
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, tiny_config, monkeypatch):
    from safetensors.torch import load_file

    cfg = VAETrainConfig(steps=6, checkpoint_every=3)
    train_vae(tiny_config, tmp_path / "full", cfg, progress=False)

    real_batch = ClipStream.batch

    def interrupted(self, k):
        if k == 4:
            raise KeyboardInterrupt
        return real_batch(self, k)

    monkeypatch.setattr(ClipStream, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_vae(tiny_config, tmp_path / "part", cfg, progress=False)
    assert Checkpointer(tmp_path / "part").load({}, {})["step"] == 3
    monkeypatch.setattr(ClipStream, "batch", real_batch)
    train_vae(tiny_config, tmp_path / "part", cfg, progress=False)

    wa = load_file(str(tmp_path / "full/vae/model.safetensors"))
    wb = load_file(str(tmp_path / "part/vae/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_clip_stream_is_reproducible():
    s = ClipStream(32, 32, 4, 3, seed=5)
    a, pa = s.batch(7)
    b, pb = s.batch(7)
    assert torch.equal(a, b) and pa == pb and a.shape == (3, 4, 3, 32, 32)


@pytest.mark.slow
def test_all_stages_on_tiny_produce_a_shippable_model(tmp_path, tiny_config):
    reports = run_training(tiny_config, tmp_path / "run", ["vae", "teacher", "distill", "evaluate"],
                           VAETrainConfig(steps=4), TeacherTrainConfig(steps=4, batch_size=4, sample_steps=6),
                           DistillConfig(steps=3, batch_size=2), progress=False)
    assert set(reports) == {"vae", "teacher", "distill", "evaluate"}
    assert (tmp_path / "run/eval/samples.png").is_file()
    ship(tmp_path / "run", tmp_path / "shipped")
    pipe = VideoPipeline.from_pretrained(tmp_path / "shipped")
    assert pipe.scheduler.timesteps == [1.0, 0.75, 0.5, 0.25]
    assert pipe.config.guidance_scale == 1.0
    index = json.loads((tmp_path / "shipped/model_index.json").read_text())
    assert index["weights_dtype"] == "float16" and "evaluation" in index["training"]
    assert pipe("a red circle moving right").frames.shape == (1, 4, 32, 32, 3)
