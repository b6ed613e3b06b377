import json

import numpy as np

from mobile_sdk.cli import main
from mobile_sdk.video_io import read_video


def test_generate_writes_a_video(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    rc = main(["generate", "--preset", "tiny", "--prompt", "a red circle moving right", "--frames", "3",
               "--height", "32", "--width", "48", "--steps", "2", "--out", str(out)])
    assert rc == 0
    assert read_video(out).shape == (3, 32, 48, 3)
    captured = capsys.readouterr()
    assert "untrained" in captured.err
    assert f"wrote {out}" in captured.out


def test_generate_from_a_model_folder(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m")
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "x", "--out", str(tmp_path / "v.gif")]) == 0
    assert (tmp_path / "v.gif").stat().st_size > 0


def test_inspect_json(capsys):
    assert main(["inspect", "--preset", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "tiny"
    assert {s["slot"] for s in data["slots"]} >= {"down0.res0", "mid.attn0", "up0.res1"}
    assert data["components"]["unet"]["params"] > data["components"]["unet"]["temporal_params"] > 0


def test_inspect_text_of_a_model_folder(tmp_path, tiny_pipe, capsys):
    tiny_pipe.save_pretrained(tmp_path / "m")
    assert main(["inspect", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "mid.attn0" in out and "attn3d" in out


def test_plan_override(tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"slots": {"*": "conv1d"}}))
    assert main(["inspect", "--preset", "tiny", "--plan", str(plan), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan_counts"]["conv1d"] == 12


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"slots": {"down9.res0": "conv1d"}}))
    assert main(["inspect", "--preset", "tiny", "--plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {plan}: unknown slot 'down9.res0'") and err.count("\n") == 1
    assert main(["generate", "--preset", "nope", "--prompt", "x"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "--prompt", "x"]) == 2
    assert "model_index.json: missing" in capsys.readouterr().err
    assert not np.any([p.suffix == ".mp4" for p in tmp_path.iterdir()])
