"""Package round trip through ExecuTorch, and every way a package can be bad."""
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from export.package_writer import export_package
from mobile_sdk.cli import main
from mobile_sdk.package import SCHEMA_VERSION, PackageError, open_package
from export.parity import psnr
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.runtime import pipeline_from_package

STEP_PLANS = [{"*": "attn1d", "mid.attn0": "attn3d"}, {"*": "attn1d", "mid.attn0": "attn3d"},
              {"down0.*": "conv3d", "up0.*": "conv1d"}, {"down0.*": "conv3d", "up0.*": "conv1d"}]


@pytest.fixture(scope="module")
def step_aware_package(tmp_path_factory):
    """One export shared by the tests: a step-aware tiny model (two distinct plans -> two methods)."""
    from tests.conftest import randomize_temporal

    pipe = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
    for view in pipe.unet.views:
        randomize_temporal(view, seed=1)
    pipe.set_progress_bar_config(disable=True)
    path = tmp_path_factory.mktemp("pkg") / "tiny.mobilepkg"
    manifest = export_package(pipe, path, check=True, make_zip=True, preset="tiny", log=lambda s: None)
    return pipe, path, manifest


def test_step_aware_plans_become_methods(step_aware_package):
    _, path, manifest = step_aware_package
    unet = manifest["targets"]["executorch"]["components"]["unet"]
    assert list(unet["methods"]) == ["plan_0", "plan_1"]
    assert [s["unet_method"] for s in manifest["steps"]] == ["plan_0", "plan_0", "plan_1", "plan_1"]
    assert manifest["temporal_plans"]["plan_0"]["mid.attn0"] == "attn3d"
    assert manifest["temporal_plans"]["plan_1"]["down0.res0"] == "conv3d"
    assert [s["dt"] for s in manifest["steps"]] == [-0.25] * 4


def test_manifest_records_delegation_parity_and_versions(step_aware_package):
    _, _, manifest = step_aware_package
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert set(manifest["tools"]) >= {"torch", "executorch", "coremltools"}
    for comp in ("unet", "vae_decoder"):
        for report in manifest["targets"]["executorch"]["components"][comp]["delegation"].values():
            assert report["flop_fraction_delegated"] > 0.999
    parity = manifest["targets"]["executorch"]["parity"]
    assert parity["passed"] and min(parity["components"].values()) >= 60.0


def test_package_generation_matches_eager(step_aware_package):
    pipe, path, _ = step_aware_package
    pte = pipeline_from_package(path)
    pte.set_progress_bar_config(disable=True)
    prompts = ["a blue square moving up", "a red circle moving right"]
    eager = pipe(prompts, generator=torch.Generator().manual_seed(5))
    ran = pte(prompts, generator=torch.Generator().manual_seed(5))
    assert psnr(eager.frames, ran.frames, peak=255.0) >= 60.0
    torch.testing.assert_close(eager.latents, ran.latents, atol=1e-4, rtol=1e-4)


def test_package_rejects_other_sizes(step_aware_package):
    from mobile_sdk.errors import ConfigError

    pte = pipeline_from_package(step_aware_package[1])
    with pytest.raises(ConfigError, match="exported for 4 frames at 32x32"):
        pte("x", num_frames=2)


def test_test_vectors_replay(step_aware_package):
    """What the apps' XCTest/JUnit suites do: run each component on the recorded inputs."""
    from mobile_sdk.runtime import ExecuTorchProgram

    _, path, manifest = step_aware_package
    with open_package(path) as pkg:
        for name, spec in manifest["test_vectors"].items():
            if spec["component"] == "pipeline":
                continue
            vec = pkg.test_vector(name)
            program = ExecuTorchProgram(pkg.path(pkg.component("executorch", spec["component"])["file"]))
            outputs = program.run(spec["method"], *(torch.from_numpy(v) for v in vec["inputs"].values()))
            for got, want in zip(outputs, vec["outputs"].values()):
                assert psnr(want, got.numpy()) >= spec["min_psnr_db"], name


def test_zip_opens_like_the_folder(step_aware_package):
    _, path, manifest = step_aware_package
    with open_package(path.with_name(path.name + ".zip")) as pkg:
        assert pkg.manifest["files"] == manifest["files"]


def test_inspect_package(step_aware_package, capsys):
    assert main(["inspect", str(step_aware_package[1]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["targets"]["executorch"]["components"]["unet"]["methods"] == ["plan_0", "plan_1"]


# ---- bad packages: each failure has its own clear error naming the file ----------------------

@pytest.fixture
def pkg_copy(step_aware_package, tmp_path):
    dst = tmp_path / "copy.mobilepkg"
    shutil.copytree(step_aware_package[1], dst)
    return dst


def test_corrupted_pte(pkg_copy):
    pte = pkg_copy / "executorch/unet.pte"
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"executorch/unet.pte: sha256 mismatch"):
        open_package(pkg_copy)


def test_unloadable_pte_even_when_unverified(pkg_copy):
    (pkg_copy / "executorch/vae_decoder.pte").write_bytes(b"not a program")
    from mobile_sdk.runtime import ExecuTorchProgram

    with pytest.raises(PackageError, match="vae_decoder.pte: ExecuTorch cannot load this program"):
        ExecuTorchProgram(pkg_copy / "executorch/vae_decoder.pte")


def test_truncated_manifest(pkg_copy):
    m = pkg_copy / "manifest.json"
    m.write_text(m.read_text()[:200])
    with pytest.raises(PackageError, match=r"manifest.json: truncated or invalid JSON"):
        open_package(pkg_copy)


def test_truncated_file_is_a_size_mismatch(pkg_copy):
    p = pkg_copy / "executorch/text_encoder.pte"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(PackageError, match=r"text_encoder.pte: size 100 bytes, manifest says"):
        open_package(pkg_copy)


def test_unknown_schema_version(pkg_copy):
    m = pkg_copy / "manifest.json"
    data = json.loads(m.read_text())
    data["schema_version"] = 99
    m.write_text(json.dumps(data))
    with pytest.raises(PackageError, match="schema_version 99 is not supported"):
        open_package(pkg_copy)


def test_missing_and_unlisted_files(pkg_copy):
    (pkg_copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(PackageError, match="extra.bin: not listed in the manifest"):
        open_package(pkg_copy)
    (pkg_copy / "extra.bin").unlink()
    (pkg_copy / "tokenizer.json").unlink()
    with pytest.raises(PackageError, match="tokenizer.json: listed in the manifest but missing"):
        open_package(pkg_copy)


def test_zip_slip_is_refused(tmp_path):
    bad = tmp_path / "evil.mobilepkg.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pkg/manifest.json", "{}")
        zf.writestr("../../outside.txt", "gotcha")
    with pytest.raises(PackageError, match=r"entry '../../outside.txt' escapes the package folder"):
        open_package(bad)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_interrupted_export_leaves_nothing(tmp_path, tiny_pipe, monkeypatch):
    import export.package_writer as writer

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_test_vectors", killed)
    target = tmp_path / "t.mobilepkg"
    with pytest.raises(KeyboardInterrupt):
        export_package(tiny_pipe, target, log=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_errors(tmp_path, capsys):
    assert main(["export", "--preset", "tiny", "--out", str(tmp_path / "x.zip")]) == 2
    assert "must end in .mobilepkg" in capsys.readouterr().err
    assert main(["generate", "--package", str(tmp_path / "none.mobilepkg"), "--prompt", "x"]) == 2
    assert "no such package" in capsys.readouterr().err


def test_calibration_captures_every_step(tiny_pipe):
    from export.calibration import capture_calibration

    calib = capture_calibration(tiny_pipe, ["forward"] * 4, ["a red circle moving right", "a blue square moving up"])
    timesteps = sorted({round(float(args[1]), 4) for args in calib["unet/forward"]})
    assert timesteps == [0.25, 0.5, 0.75, 1.0]
    assert len(calib["unet/forward"]) == 8 and len(calib["text_encoder"]) == 2
    assert all(z[0].shape == (1, 4, 4, 4) for z in calib["vae_decoder"])


def test_int8_package_passes_its_gate(tmp_path, tiny_pipe):
    manifest = export_package(tiny_pipe, tmp_path / "q.mobilepkg", quantize="int8", check=True,
                              calibration_prompts=4, log=lambda s: None)
    assert manifest["quantization"]["executorch"] == {"text_encoder": "none", "unet": "int8", "vae_decoder": "int8"}
    parity = manifest["targets"]["executorch"]["parity"]
    assert parity["passed"] and parity["pipeline_frames_db"] >= 25.0
    fp32 = export_package(tiny_pipe, tmp_path / "f.mobilepkg", log=lambda s: None)
    int8_bytes = manifest["targets"]["executorch"]["components"]["unet"]["bytes"]
    assert int8_bytes < 0.6 * fp32["targets"]["executorch"]["components"]["unet"]["bytes"]
