"""The native engine (mobile_sdk/engine): noise bit-identity with Python, frames against the Python
runtime, the package's test vectors, benchmark results, and clear errors for broken packages."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from mobile_sdk.engine import build as engine_build
from mobile_sdk.engine.commands import EngineError, add_engine_parser
from mobile_sdk.cli import main as cli_main
from mobile_sdk.noise import portable_normal
from mobile_sdk.package import format_size
from tests.conftest import EXTRA_SIZE
from tests.engine_fixtures import (  # noqa: F401 - fixtures
    PROMPT, engine_cli, package_copy, psnr_u8, python_frames, run_cli, tiny_engine_package,
)

SCHEMA = Path(__file__).resolve().parents[1] / "mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json"


def engine_frames(cli: Path, package: Path, out: Path, prompt: str = PROMPT, seed: int = 7, *extra: str) -> np.ndarray:
    run_cli(cli, "--package", package, "--prompt", prompt, "--seed", seed, "--out", out, *extra)
    return np.load(out)


# ---- the portable noise ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7, 2**63 + 12345, 2**64 - 1])
def test_noise_is_bit_identical_to_python(engine_cli, tmp_path, seed):
    out = tmp_path / "noise.npy"
    run_cli(engine_cli, "--noise", seed, "--count", 100_000, "--out", out)
    got, want = np.load(out), portable_normal(seed, (100_000,))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_noise_offset_continues_the_stream(engine_cli, tmp_path):
    out = tmp_path / "noise.npy"
    run_cli(engine_cli, "--noise", 3, "--count", 1000, "--offset", 500, "--out", out)
    assert np.array_equal(np.load(out).view(np.uint32), portable_normal(3, (1500,))[500:].view(np.uint32))


# ---- generation ------------------------------------------------------------------------------
def test_frames_match_the_python_runtime_tiny(engine_cli, tiny_engine_package, tmp_path):
    frames = engine_frames(engine_cli, tiny_engine_package, tmp_path / "f.npy", PROMPT, 11)
    reference = python_frames(tiny_engine_package, PROMPT, 11)
    assert frames.dtype == np.uint8 and frames.shape == reference.shape
    assert psnr_u8(reference, frames) >= 60.0


@pytest.mark.slow
def test_frames_match_the_python_runtime_demo(engine_cli, demo_package, tmp_path):
    """The shipped demo model: same prompt, same seed, the engine and the Python runtime agree."""
    frames = engine_frames(engine_cli, demo_package, tmp_path / "f.npy", PROMPT, 7, "--threads", "2")
    reference = python_frames(demo_package, PROMPT, 7)
    assert frames.shape == reference.shape == (8, 64, 64, 3)
    assert psnr_u8(reference, frames) >= 60.0
    assert frames.std() > 5  # a video, not a constant image


def test_frames_match_the_python_runtime_at_every_size(engine_cli, tiny_engine_package, tmp_path):
    """The package's second size (its own UNet and decoder methods): the engine opened at it gives the Python
    runtime's frames; its header names the size; `mobile-sdk engine run` passes the size through."""
    f, h, w = EXTRA_SIZE
    frames = engine_frames(engine_cli, tiny_engine_package, tmp_path / "f.npy", PROMPT, 11,
                           "--height", h, "--width", w, "--frames", f)
    assert frames.shape == (f, h, w, 3)
    assert psnr_u8(python_frames(tiny_engine_package, PROMPT, 11, EXTRA_SIZE), frames) >= 60.0
    _, summary, stderr = run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--out",
                                 tmp_path / "g.npy", "--height", h, "--width", w)
    assert f"{f} frames {w}x{h} (of 2 sizes)" in stderr and summary["shape"] == [f, h, w, 3]
    out = tmp_path / "run.npy"
    assert cli_main(["engine", "run", "--package", str(tiny_engine_package), "--prompt", PROMPT, "--seed", "11",
                     "--height", str(h), "--width", str(w), "--out", str(out)]) == 0
    assert np.array_equal(np.load(out), frames)


def test_a_size_the_package_lacks_is_a_one_line_error(engine_cli, tiny_engine_package, tmp_path, capsys):
    code, _, stderr = run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--out",
                              tmp_path / "f.npy", "--height", 64, "--width", 64, check=False)
    want = (f"{tiny_engine_package}: no size 4x64x64 (frames x height x width) in this package; it was exported for "
            f"4x32x32, {format_size(EXTRA_SIZE)}")
    assert code == 2 and stderr.strip() == f"mvd_engine_cli: {want}"
    assert not (tmp_path / "f.npy").exists()
    assert cli_main(["generate", "--package", str(tiny_engine_package), "--prompt", PROMPT, "--height", "64",
                     "--width", "64", "--out", str(tmp_path / "g.npy")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {want}" and not (tmp_path / "g.npy").exists()
    code, _, stderr = run_cli(engine_cli, "--package", tiny_engine_package, "--self-test", "--height", EXTRA_SIZE[1],
                              "--width", EXTRA_SIZE[2], check=False)
    assert code == 2 and "test vector 'pipeline': recorded at the package's default size" in stderr


def test_seed_changes_the_video_and_repeats_exactly(engine_cli, tiny_engine_package, tmp_path):
    a = engine_frames(engine_cli, tiny_engine_package, tmp_path / "a.npy", PROMPT, 1)
    b = engine_frames(engine_cli, tiny_engine_package, tmp_path / "b.npy", PROMPT, 1)
    c = engine_frames(engine_cli, tiny_engine_package, tmp_path / "c.npy", PROMPT, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_raw_rgb_output_holds_the_same_bytes(engine_cli, tiny_engine_package, tmp_path):
    frames = engine_frames(engine_cli, tiny_engine_package, tmp_path / "f.npy")
    run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--seed", 7, "--out", tmp_path / "f.rgb")
    assert (tmp_path / "f.rgb").read_bytes() == frames.tobytes()


def test_summary_has_stage_and_step_timings(engine_cli, tiny_engine_package, tmp_path):
    _, summary, _ = run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--out", tmp_path / "f.npy")
    t = summary["timings_ms"]
    manifest = json.loads((tiny_engine_package / "manifest.json").read_text())
    assert len(t["steps_ms"]) == len(manifest["steps"])
    assert t["total_ms"] >= t["text_encoder_ms"] + t["denoise_ms"] + t["vae_decoder_ms"] > 0
    assert summary["peak_rss_mb"] > 0


# ---- test vectors ----------------------------------------------------------------------------
def test_self_test_passes_on_a_fresh_package(engine_cli, tiny_engine_package):
    code, summary, stderr = run_cli(engine_cli, "--package", tiny_engine_package, "--self-test")
    assert code == 0 and summary["self_test"] == "passed"
    manifest = json.loads((tiny_engine_package / "manifest.json").read_text())
    lines = [ln.split() for ln in stderr.splitlines() if ln.startswith("self-test ") and ln.endswith(("ok", "FAILED"))]
    assert {ln[1] for ln in lines} == set(manifest["test_vectors"])  # every vector replayed, both UNet methods included
    assert {"unet.plan_0", "unet.plan_1"} <= {ln[1] for ln in lines}
    assert all(ln[-1] == "ok" for ln in lines)


def test_self_test_fails_below_min_psnr(engine_cli, package_copy):
    pkg = package_copy()
    vector = json.loads((pkg / "manifest.json").read_text())["test_vectors"]["vae_decoder"]["outputs"]["rgb"]
    data = np.fromfile(pkg / vector["file"], dtype="<f4")
    (data + 0.5).astype("<f4").tofile(pkg / vector["file"])  # a wrong recorded output
    code, _, stderr = run_cli(engine_cli, "--package", pkg, "--self-test", "--no-verify", check=False)
    assert code == 1
    assert any("vae_decoder" in ln and ln.endswith("FAILED") for ln in stderr.splitlines())


# ---- benchmark -------------------------------------------------------------------------------
def test_benchmark_result_validates_against_the_schema(engine_cli, tiny_engine_package, tmp_path):
    out = tmp_path / "bench.json"
    run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--seed", 2**64 - 1,
            "--benchmark", out, "--warmup", 1, "--runs", 4, "--threads", 1)
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert doc["runs"] == 4 and doc["warmup"] == 1 and doc["threads"] == 1 and doc["seed"] == 2**64 - 1
    assert doc["package"]["manifest_sha256"] == hashlib.sha256((tiny_engine_package / "manifest.json").read_bytes()).hexdigest()
    total = doc["stages_ms"]["total"]
    assert len(total["runs"]) == 4 and min(total["runs"]) <= total["trimmean"] <= max(total["runs"])
    assert len(doc["steps_ms"]) == 4 and all(len(s["runs"]) == 4 for s in doc["steps_ms"])
    assert doc["metrics"]["peak_rss(mb)"] > 0 and "emulated" not in doc["device"]


# ---- broken packages: one line naming the file, exit 2 -----------------------------------------
def _edit_manifest(pkg: Path, edit) -> None:
    path = pkg / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _rehash(pkg: Path, rel: str) -> None:
    data = (pkg / rel).read_bytes()
    _edit_manifest(pkg, lambda m: m["files"].__setitem__(rel, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def _flip_byte(pkg):
    p = pkg / "executorch/unet.pte"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    return "unet.pte", "sha256 mismatch"


def _missing_file(pkg):
    (pkg / "executorch/vae_decoder.pte").unlink()
    return "vae_decoder.pte", "missing"


def _path_outside(pkg):
    _edit_manifest(pkg, lambda m: m["targets"]["executorch"]["components"]["unet"].__setitem__("file", "../unet.pte"))
    return "../unet.pte", "not a path inside the package"


def _symlink_outside(pkg):
    outside = pkg.parent / "elsewhere.pte"
    (pkg / "executorch/unet.pte").rename(outside)
    os.symlink(outside, pkg / "executorch/unet.pte")
    return "unet.pte", "outside the package"


def _garbage_pte(pkg):
    (pkg / "executorch/unet.pte").write_bytes(np.random.default_rng(0).bytes(4096))
    _rehash(pkg, "executorch/unet.pte")
    return "unet.pte", "not an ExecuTorch program"


def _garbage_after_header(pkg):
    p = pkg / "executorch/text_encoder.pte"
    p.write_bytes(p.read_bytes()[:8] + np.random.default_rng(1).bytes(4096))
    _rehash(pkg, "executorch/text_encoder.pte")
    return "text_encoder.pte", "cannot load"


def _first_step_calls(m, method):
    """Step 0 of the default size (the top level and sizes[0], which must agree) calls `method`."""
    for steps in (m["steps"], m["sizes"][0]["steps"]):
        steps[0]["unet_method"] = method


def _missing_method(pkg):
    _edit_manifest(pkg, lambda m: _first_step_calls(m, "plan_9"))
    return "manifest.json", "plan_9"


def _method_not_in_program(pkg):
    def edit(m):
        methods = m["targets"]["executorch"]["components"]["unet"]["methods"]
        methods["plan_9"] = methods["plan_0"]
        _first_step_calls(m, "plan_9")
    _edit_manifest(pkg, edit)
    return "unet.pte", "no method 'plan_9'"


def _shape_mismatch(pkg):
    def edit(m):
        method = m["targets"]["executorch"]["components"]["vae_decoder"]["methods"][m["sizes"][0]["vae_decoder_method"]]
        method["inputs"][0]["shape"][0] = 2
    _edit_manifest(pkg, edit)
    return "vae_decoder.pte", "the manifest says"


def _io_name_mismatch(pkg):
    def edit(m):
        for method in m["targets"]["executorch"]["components"]["unet"]["methods"].values():
            method["inputs"][0]["name"] = "x"
    _edit_manifest(pkg, edit)
    return "manifest.json", "the contract says"


def _unlisted_file(pkg):
    (pkg / "executorch/extra.bin").write_bytes(b"x")
    return "extra.bin", "not listed"


def _not_json(pkg):
    (pkg / "manifest.json").write_text("{not json")
    return "manifest.json", "not valid JSON"


def _wrong_schema_version(pkg):
    _edit_manifest(pkg, lambda m: m.__setitem__("schema_version", 99))
    return "manifest.json", "schema_version 99"


def _wrong_json_type(pkg):
    _edit_manifest(pkg, lambda m: m["targets"]["executorch"]["components"]["unet"].__setitem__("methods", {"plan_0": 3}))
    return "manifest.json", "unexpected value"


BREAKAGES = [_flip_byte, _missing_file, _path_outside, _symlink_outside, _garbage_pte, _garbage_after_header,
             _missing_method, _method_not_in_program, _shape_mismatch, _io_name_mismatch, _unlisted_file, _not_json,
             _wrong_schema_version, _wrong_json_type]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_broken_package_is_one_clear_line_and_exit_2(engine_cli, package_copy, tmp_path, breakage):
    pkg = package_copy()
    file_name, problem = breakage(pkg)
    code, _, stderr = run_cli(engine_cli, "--package", pkg, "--prompt", PROMPT, "--out", tmp_path / "f.npy", check=False)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert file_name in lines[0] and problem in lines[0], lines[0]
    assert not (tmp_path / "f.npy").exists()


def test_no_verify_skips_checksums_but_not_confinement(engine_cli, package_copy, tmp_path):
    flipped = package_copy("flipped.mobilepkg")
    tokenizer = flipped / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text() + " ")  # a harmless change with a wrong checksum
    code, _, _ = run_cli(engine_cli, "--package", flipped, "--no-verify", "--prompt", PROMPT, "--out", tmp_path / "f.npy")
    assert code == 0
    outside = package_copy("outside.mobilepkg")
    _path_outside(outside)
    code, _, stderr = run_cli(engine_cli, "--package", outside, "--no-verify", "--prompt", PROMPT, "--out", tmp_path / "g.npy",
                              check=False)
    assert code == 2 and "not a path inside the package" in stderr


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--threads", "0"], "--threads"),
    (["--bogus"], "unknown option"),
    (["--out", "x.mp4"], "must end in .npy or .rgb"),
])
def test_bad_arguments_are_one_line(engine_cli, tiny_engine_package, tmp_path, args, message):
    base = ["--package", tiny_engine_package, "--prompt", PROMPT, "--out", tmp_path / "f.npy"]
    code, _, stderr = run_cli(engine_cli, *base, *args, check=False)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and message in stderr


# ---- the Python glue (`mobile-sdk engine ...`) ------------------------------------------------
def _engine_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mobile-sdk")
    add_engine_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["engine", *argv])
    return args.func(args)


def test_engine_build_prints_the_cli_path_last(capsys, engine_cli):
    assert _engine_command("build") == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(engine_cli)


def test_engine_run_writes_npy_and_video(engine_cli, tiny_engine_package, tmp_path, capsys):
    reference = engine_frames(engine_cli, tiny_engine_package, tmp_path / "cli.npy", PROMPT, 5)
    assert _engine_command("run", "--package", str(tiny_engine_package), "--prompt", PROMPT, "--seed", "5",
                           "--out", str(tmp_path / "glue.npy")) == 0
    assert np.array_equal(np.load(tmp_path / "glue.npy"), reference)
    assert _engine_command("run", "--package", str(tiny_engine_package), "--prompt", PROMPT, "--seed", "5",
                           "--out", str(tmp_path / "v.gif"), "--self-test") == 0
    out = capsys.readouterr().out
    assert (tmp_path / "v.gif").stat().st_size > 0 and "self-test passed" in out and "denoising" in out


def test_engine_run_errors_are_sdk_errors(engine_cli, package_copy, tmp_path):
    pkg = package_copy()
    _flip_byte(pkg)
    with pytest.raises(EngineError, match=r"unet\.pte: sha256 mismatch"):
        _engine_command("run", "--package", str(pkg), "--prompt", PROMPT, "--out", str(tmp_path / "f.npy"))
    with pytest.raises(EngineError, match="no such package"):
        _engine_command("run", "--package", str(tmp_path / "none.mobilepkg"), "--prompt", PROMPT, "--out", str(tmp_path / "f.npy"))


def test_build_cache_key_follows_sources_and_arch(tmp_path):
    assert engine_build.build_dir("host") == engine_build.build_dir("host")
    assert engine_build.build_dir("host") != engine_build.build_dir("arm64")
    with pytest.raises(engine_build.EngineBuildError, match="unknown --arch"):
        engine_build.build_dir("riscv")
