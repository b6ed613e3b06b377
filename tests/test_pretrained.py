import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mobile_sdk.errors import ConfigError, WeightsError
from mobile_sdk.models import VideoUNet
from mobile_sdk.pipeline import VideoPipeline


def test_round_trip_is_bit_exact(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "model")
    loaded = VideoPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    for a, b in [(tiny_pipe.unet, loaded.unet), (tiny_pipe.text_encoder, loaded.text_encoder),
                 (tiny_pipe.vae_decoder, loaded.vae_decoder)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.unet.plan == tiny_pipe.unet.plan
    assert loaded.config == tiny_pipe.config
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert (tiny_pipe("x", generator=g1).frames == loaded("x", generator=g2).frames).all()


def test_folder_layout_has_no_pickles(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert files == [
        "model_index.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "unet/config.json", "unet/model.safetensors",
        "vae/config.json", "vae/model.safetensors",
    ]


def test_missing_weights_file_is_named(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m/unet/model.safetensors").unlink()
    with pytest.raises(WeightsError, match="unet/model.safetensors: missing weights file"):
        VideoPipeline.from_pretrained(tmp_path / "m")


def test_corrupt_weights_file_is_named(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m/vae/model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="vae/model.safetensors: not a readable safetensors file"):
        VideoPipeline.from_pretrained(tmp_path / "m")


def test_shape_mismatch_is_named(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    path = tmp_path / "m/unet/model.safetensors"
    state = load_file(str(path))
    state["conv_in.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(WeightsError, match="conv_in.weight has shape"):
        VideoUNet.from_pretrained(tmp_path / "m/unet")


def test_plan_mismatch_between_config_and_weights(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m/unet/config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["temporal_plan"] = {k: "none" for k in cfg["temporal_plan"]}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="do not match the unet config: missing \\[\\], unexpected \\['temporal"):
        VideoUNet.from_pretrained(tmp_path / "m/unet")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(WeightsError, match="model_index.json: missing"):
        VideoPipeline.from_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="is not 'mobile-sdk-model' version 1"):
        VideoPipeline.from_pretrained(tmp_path)


def test_failed_save_leaves_nothing(tmp_path, tiny_pipe, monkeypatch):
    def boom(self, directory, dtype=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tiny_pipe.vae_decoder.vae), "write_pretrained", boom)
    with pytest.raises(RuntimeError):
        tiny_pipe.save_pretrained(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
