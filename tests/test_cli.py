import json

import numpy as np
import pytest

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
    assert main(["generate", "--preset", "nope", "--prompt", "x", "--out", str(tmp_path / "a.mp4")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "b.mp4")]) == 2
    assert "model_index.json: missing" in capsys.readouterr().err
    assert not np.any([p.suffix == ".mp4" for p in tmp_path.iterdir()])


def test_generate_npy_is_the_exact_frames_and_seeded_by_portable_noise(tmp_path, capsys):
    args = ["generate", "--preset", "tiny", "--prompt", "a red circle moving right", "--steps", "2"]
    assert main([*args, "--seed", "7", "--out", str(tmp_path / "a.npy")]) == 0
    assert main([*args, "--seed", "7", "--out", str(tmp_path / "b.npy")]) == 0
    assert main([*args, "--seed", "8", "--out", str(tmp_path / "c.npy")]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npy", allow_pickle=False) for n in "abc")
    assert a.dtype == np.uint8 and a.shape == (4, 32, 32, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_output_or_seed_fails_before_any_work(tmp_path, capsys):
    assert main(["generate", "--preset", "tiny", "--prompt", "x", "--out", str(tmp_path / "v.avi")]) == 2
    assert "unknown output type '.avi'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["generate", "--preset", "tiny", "--prompt", "x", "--seed", "-1", "--out", str(tmp_path / "v.mp4")])
    assert e.value.code == 2
    assert "argument --seed: -1 is out of range: a seed is 0 to 18446744073709551615" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _numeric_options():
    """(command words, option, type) for every numeric option of every subcommand, found in the parser."""
    import argparse

    from mobile_sdk import cli_types
    from mobile_sdk.cli import build_parser

    typed = {cli_types.count, cli_types.nonneg_count, cli_types.seed, cli_types.positive_float}
    found = []

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif action.option_strings and action.type is not None:
                assert action.type in typed, f"{' '.join(words)} {action.option_strings[0]} has an unchecked type"
                found.append((words, action.option_strings[0], action.type))

    walk(build_parser(), [])
    return found


def test_every_numeric_option_refuses_bad_values(capsys):
    """0, -1, huge, NaN and inf for every numeric option: argparse's one-line error, exit 2, no traceback.
    (A huge finite budget or memory limit is honoured, not refused: it only means "no limit".)"""
    from mobile_sdk import cli_types

    options = _numeric_options()
    assert len(options) >= 30
    for words, option, kind in options:
        allowed_zero = kind in (cli_types.nonneg_count, cli_types.seed)
        for value in ("0", "-1", str(10 ** 30), "nan", "inf", "x"):
            if (value == "0" and allowed_zero) or (value == str(10 ** 30) and kind is cli_types.positive_float):
                continue
            with pytest.raises(SystemExit) as e:
                main([*words, f"{option}={value}"])
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert f"argument {option}" in err and "Traceback" not in err, (words, option, value, err)


def test_each_layer_registers_its_own_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("generate", "inspect", "export", "train", "search", "supernet", "profile"):
        assert command in listed


def test_the_runtime_never_imports_export_or_profiling():
    """mobile_sdk is the light runtime side: other layers plug into it, never the other way round."""
    import ast
    from pathlib import Path

    import mobile_sdk

    offenders = []
    for path in Path(mobile_sdk.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("export", "profiling")]
    assert offenders == []


def test_long_and_non_utf8_prompts_are_read_and_said(tmp_path, capsys):
    long_prompt = "a red circle moving right " * 10
    assert main(["generate", "--preset", "tiny", "--prompt", long_prompt, "--steps", "1", "--out", str(tmp_path / "a.npy")]) == 0
    assert "the prompt is cut to the model's 14 bytes" in capsys.readouterr().err
    raw = b"caf\xe9 au lait".decode("utf-8", errors="surrogateescape")  # what Python makes of a Latin-1 argv
    assert main(["generate", "--preset", "tiny", "--prompt", raw, "--steps", "1", "--out", str(tmp_path / "b.npy")]) == 0
