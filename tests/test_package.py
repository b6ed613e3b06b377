"""Package round trip through ExecuTorch, and every way a package can be bad."""
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from export.lowering.package_writer import export_package
from export.lowering.worker_lowering import save_exported
from mobile_sdk.cli import main
from mobile_sdk.errors import SDKError
from mobile_sdk.package import SCHEMA_VERSION, PackageError, open_package
from export.lowering.parity import INT8_FRAMES_MIN_DB, psnr
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.runtime import pipeline_from_package
from mobile_sdk.config import load_preset
from mobile_sdk.package import format_size
from export.nas.elastic import SubNet
from tests.conftest import EXTRA_SIZE, CallRecorder
from tests.engine_fixtures import engine_cli  # noqa: F401 - fixture

EXTRA = format_size(EXTRA_SIZE)

def test_step_aware_plans_and_subnetworks_become_methods(step_aware_package):
    """Each distinct (plan, sub-network) of the steps is a UNet method, at each size; the manifest records
    each method's plan, sub-network and FLOPs, and each size's steps and decoder method."""
    _, path, manifest = step_aware_package
    unet = manifest["targets"]["executorch"]["components"]["unet"]
    sized = [f"plan_0__{EXTRA}", f"plan_1__{EXTRA}"]
    assert list(unet["methods"]) == ["plan_0", "plan_1", *sized]
    assert [s["unet_method"] for s in manifest["steps"]] == ["plan_0", "plan_0", "plan_1", "plan_1"]
    assert manifest["temporal_plans"]["plan_0"]["mid.attn0"] == "attn3d"
    assert manifest["temporal_plans"]["plan_1"]["down0.res0"] == "conv3d"
    assert "mid.attn0" not in manifest["temporal_plans"]["plan_1"]  # the smallest sub-network has no middle block
    assert [s["dt"] for s in manifest["steps"]] == [-0.25] * 4
    cfg = load_preset("tiny").unet
    methods = manifest["unet_methods"]
    assert {m: methods[m]["temporal_plan"] for m in methods} == {"plan_0": "plan_0", "plan_1": "plan_1",
                                                                sized[0]: "plan_0", sized[1]: "plan_1"}
    assert methods["plan_0"]["subnet"] == SubNet.full(cfg).to_dict() == methods[sized[0]]["subnet"]
    assert methods["plan_1"]["subnet"] == SubNet.smallest(cfg).to_dict() == methods[sized[1]]["subnet"]
    flops = {m: methods[m]["flops_per_call"] for m in methods}
    assert flops["plan_1"] < flops["plan_0"] and flops[sized[1]] < flops[sized[0]] < flops["plan_0"]  # 16x32: half the pixels
    f, h, w = EXTRA_SIZE
    assert [(s["video"]["num_frames"], s["video"]["height"], s["video"]["width"]) for s in manifest["sizes"]] == [
        (4, 32, 32), EXTRA_SIZE]
    default, extra = manifest["sizes"]
    assert (default["video"], default["latent"], default["steps"]) == (manifest["video"], manifest["latent"], manifest["steps"])
    assert [s["unet_method"] for s in extra["steps"]] == [sized[0]] * 2 + [sized[1]] * 2
    assert (default["vae_decoder_method"], extra["vae_decoder_method"]) == ("main", f"main__1x{h}x{w}")
    assert (extra["latent"]["height"], extra["latent"]["width"]) == (h // 8, w // 8)
    assert set(manifest["targets"]["executorch"]["parity"]["components"]) >= {f"unet.{m}" for m in methods}


def test_manifest_records_delegation_parity_and_versions(step_aware_package):
    _, _, manifest = step_aware_package
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert set(manifest["tools"]) >= {"torch", "executorch", "coremltools"}
    for comp in ("unet", "vae_decoder"):
        for report in manifest["targets"]["executorch"]["components"][comp]["delegation"].values():
            assert report["flop_fraction_delegated"] > 0.999
            assert report["ops_outside_by_type"] == {}  # every op, not only the FLOPs (a graph break costs)
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
    with pytest.raises(PackageError, match=rf"tiny.mobilepkg: no size 4x64x64 \(frames x height x width\) in this "
                                           rf"package; it was exported for 4x32x32, {EXTRA}$"):
        pipeline_from_package(step_aware_package[1], height=64, width=64)


def test_every_size_generates_as_the_eager_pipeline(step_aware_package):
    """At each size the package serves, the programs give the eager step-aware pipeline's frames."""
    pipe, path, manifest = step_aware_package
    for size in manifest["sizes"]:
        v = size["video"]
        pte = pipeline_from_package(path, num_frames=v["num_frames"], height=v["height"], width=v["width"])
        pte.set_progress_bar_config(disable=True)
        ran = pte("a red circle moving right", generator=torch.Generator().manual_seed(3))
        eager = pipe("a red circle moving right", num_frames=v["num_frames"], height=v["height"], width=v["width"],
                     generator=torch.Generator().manual_seed(3))
        assert ran.frames.shape == (1, v["num_frames"], v["height"], v["width"], 3)
        assert psnr(eager.frames, ran.frames, peak=255.0) >= 60.0, v


def test_test_vectors_replay(step_aware_package):
    """What the apps' XCTest/JUnit suites do: run each component on the recorded inputs."""
    from mobile_sdk.runtime import ExecuTorchProgram

    _, path, manifest = step_aware_package
    with open_package(path) as pkg:
        for name, spec in manifest["test_vectors"].items():
            if spec["component"] in ("pipeline", "noise"):
                continue
            vec = pkg.test_vector(name)
            program = ExecuTorchProgram(pkg.path(pkg.component("executorch", spec["component"])["file"]))
            outputs = program.run(spec["method"], *(torch.from_numpy(v) for v in vec["inputs"].values()))
            for got, want in zip(outputs, vec["outputs"].values()):
                assert psnr(want, got.numpy()) >= spec["min_psnr_db"], name


def test_noise_vector_is_the_portable_generator(step_aware_package):
    from mobile_sdk.noise import portable_normal

    _, path, manifest = step_aware_package
    assert manifest["noise"]["generator"] == "splitmix64-boxmuller-v1"
    with open_package(path) as pkg:
        spec = manifest["test_vectors"]["noise"]
        noise = pkg.test_vector("noise")["outputs"]["noise"]
        assert np.array_equal(noise, portable_normal(spec["seed"], noise.shape))
        pipeline = pkg.test_vector("pipeline")["inputs"]["initial_latents"]
        assert manifest["test_vectors"]["pipeline"]["seed"] == spec["seed"] and np.array_equal(pipeline, noise)


def test_zip_opens_like_the_folder(step_aware_package):
    _, path, manifest = step_aware_package
    with open_package(path.with_name(path.name + ".zip")) as pkg:
        assert pkg.manifest["files"] == manifest["files"]


def test_inspect_package(step_aware_package, capsys):
    assert main(["inspect", str(step_aware_package[1]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["targets"]["executorch"]["components"]["unet"]["methods"][:2] == ["plan_0", "plan_1"]
    assert summary["sizes"] == ["4x32x32", EXTRA]
    assert main(["inspect", str(step_aware_package[1])]) == 0
    text = capsys.readouterr().out
    assert f"sizes (frames x height x width): 4x32x32 (default), {EXTRA}" in text
    assert "unet plan_1: plan plan_1, widths [0.5, 0.5], up blocks [1, 1], transformer depths [1, 1], mid block False" in text


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
    """Interrupted after the first program is written: no half-written package, no temp folder."""
    import export.lowering.package_writer as writer

    calls = []

    class NotAProgram:
        def write_to_file(self, f):
            f.write(b"not a program")

    def first_then_killed(exported, log):
        calls.append(exported)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return NotAProgram(), {}

    monkeypatch.setattr(writer, "lower_exported", first_then_killed)
    target = tmp_path / "t.mobilepkg"
    with pytest.raises(KeyboardInterrupt):
        export_package(tiny_pipe, target, log=lambda s: None)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_worker_failure_names_the_component(tmp_path):
    """A component that fails in its worker process is one SDKError line naming it, not a traceback."""
    from export.lowering.worker_lowering import SCRATCH, WorkerLowering

    (tmp_path / SCRATCH).mkdir()
    (tmp_path / SCRATCH / "unet.main.pt2").write_bytes(b"not an exported program")
    workers = WorkerLowering(tmp_path, {"unet": {"main": str(tmp_path / SCRATCH / "unet.main.pt2")}}, {"unet": "none"},
                             lambda s: None)
    with pytest.raises(SDKError, match=r"lowering unet failed in its worker process: .+") as info:
        workers.run()
    assert "\n" not in str(info.value)


def test_low_memory_export_releases_the_weights(tmp_path, monkeypatch):
    """--low-memory --no-overlap frees the caller's weights before any component is lowered (that is the point)."""
    from export.lowering.worker_lowering import WorkerLowering

    pipe = VideoPipeline.from_preset("tiny", seed=0)
    devices = []

    def worker(self, comp, *args):
        devices.append(pipe.unet.conv_in.weight.device.type)
        raise KeyboardInterrupt

    monkeypatch.setattr(WorkerLowering, "_lower", worker)
    with pytest.raises(KeyboardInterrupt):
        export_package(pipe, tmp_path / "t.mobilepkg", low_memory=True, overlap=False, log=lambda s: None)
    assert devices == ["meta"] and list(tmp_path.iterdir()) == []


def test_overlapped_workers_stop_when_the_export_fails(tmp_path, monkeypatch):
    """With --overlap the first worker runs while this process computes the test vectors, on one thread
    fewer; an interrupt there terminates the worker and leaves nothing behind."""
    import time

    import export.lowering.package_writer as writer

    started, seen = [], {}

    class Recorded(writer.WorkerLowering):
        def start(self):
            started.append(self)
            super().start()

    def interrupted(*args, **kwargs):
        deadline = time.monotonic() + 60
        while not started[0]._procs and time.monotonic() < deadline:
            time.sleep(0.05)
        (proc,) = started[0]._procs.values()
        seen["threads"], seen["worker_running"] = torch.get_num_threads(), proc.poll() is None
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "WorkerLowering", Recorded)
    monkeypatch.setattr(writer, "_write_test_vectors", interrupted)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            export_package(VideoPipeline.from_preset("tiny", seed=0), tmp_path / "t.mobilepkg", low_memory=True,
                           overlap=True, log=lambda s: None)
        assert seen == {"threads": 1, "worker_running": True} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert list(started[0]._procs) == ["unet"]  # the largest first
    assert all(p.poll() is not None for p in started[0]._procs.values()) and list(tmp_path.iterdir()) == []


def test_the_exporting_process_gets_its_thread_back_once_the_workers_are_done():
    """At 0.6B the workers finished 1.6 min before the test vectors, which went on with one thread."""
    from export.lowering.worker_lowering import leave_a_core

    class Workers:
        started, finished, checks = True, False, 0

        def check(self):
            self.checks += 1

    workers, before = Workers(), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with leave_a_core(workers) as between:
            between()
            assert torch.get_num_threads() == 1 and workers.checks == 1
            workers.finished = True
            between()
            assert torch.get_num_threads() == 2 and workers.checks == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_failed_worker_stops_the_test_vectors_at_once(tmp_path, monkeypatch):
    """A background worker that fails (here its program is unreadable) ends the export at the next step of
    the eager test vectors, with the worker's error, not after all of them (minutes at 0.6B)."""
    import time

    import export.lowering.package_writer as writer

    started, steps = [], []

    class Recorded(writer.WorkerLowering):
        def start(self):
            started.append(self)
            super().start()

    def unreadable(root, comp, exported):
        paths = save_exported(root, comp, exported)
        if comp == "unet":
            Path(paths["main"]).write_bytes(b"not a program")
        return paths

    pipe = VideoPipeline.from_preset("tiny", seed=0)
    real = pipe.velocity_for_step

    def step_after_the_failure(i):
        steps.append(i)
        deadline = time.monotonic() + 120
        while not started[0]._errors and time.monotonic() < deadline:
            time.sleep(0.05)
        return real(i)

    monkeypatch.setattr(writer, "WorkerLowering", Recorded)
    monkeypatch.setattr(writer, "save_exported", unreadable)
    monkeypatch.setattr(pipe, "velocity_for_step", step_after_the_failure)
    with pytest.raises(SDKError, match="lowering unet failed in its worker process: .*"):
        export_package(pipe, tmp_path / "t.mobilepkg", low_memory=True, overlap=True, log=lambda s: None)
    assert steps == [0] and list(tmp_path.iterdir()) == []


def test_overlap_needs_the_memory_of_a_worker_beside_this_process(tmp_path):
    from export.lowering.worker_lowering import (
        OVERLAP_HEADROOM_BYTES, WORKER_PEAK_PER_PROGRAM_BYTE, overlap_fits, overlap_reason,
    )

    (tmp_path / "unet.pt2").write_bytes(b"x" * 1000)
    (tmp_path / "text.pt2").write_bytes(b"x" * 10)
    programs = {"unet": {"main": str(tmp_path / "unet.pt2")}, "text_encoder": {"main": str(tmp_path / "text.pt2")}}
    need = WORKER_PEAK_PER_PROGRAM_BYTE * 1000 + OVERLAP_HEADROOM_BYTES
    assert overlap_fits(programs, int(need)) and not overlap_fits(programs, int(need) - 1)
    assert not overlap_fits(programs, None)  # no way to know (not Linux): the least memory
    assert overlap_reason(programs, True) == "--overlap" and overlap_reason(programs, False) is None


def test_unet_vectors_are_the_pipelines_own_calls(step_aware_package):
    """Each UNet entry at the default size takes its test vector from the pipeline's first call of it (no
    extra eager call): plan_0's inputs are the pipeline's noise at step 0, plan_1's are step 2's latents;
    the fresh pipeline reproduces both outputs from those inputs."""
    pipe, path, manifest = step_aware_package
    vectors = manifest["test_vectors"]

    def load(spec):
        return torch.from_numpy(np.fromfile(path / spec["file"], dtype=spec["dtype"]).reshape(spec["shape"]))

    noise = load(vectors["pipeline"]["inputs"]["initial_latents"])
    first, second = vectors["unet.plan_0"], vectors["unet.plan_1"]
    assert torch.equal(load(first["inputs"]["sample"]), noise)
    assert not torch.equal(load(second["inputs"]["sample"]), noise)
    assert load(second["inputs"]["timestep"]).item() == pipe.scheduler.timesteps[2]
    for vec, step in ((first, 0), (second, 2)):
        with torch.no_grad():
            out = pipe.unet_for_step(step)(*(load(vec["inputs"][n]) for n in ("sample", "timestep", "encoder_hidden_states")))
        assert torch.allclose(out, load(vec["outputs"]["velocity"]), atol=1e-5)


def test_cli_export_errors(tmp_path, capsys):
    assert main(["export", "--preset", "tiny", "--out", str(tmp_path / "x.zip")]) == 2
    assert "must end in .mobilepkg" in capsys.readouterr().err
    for size, message in [("40x40", "--size 4x40x40: height and width must be positive multiples of 16, got 40x40"),
                          ("2x32", "--size 4x2x32: height and width must be positive multiples of 16, got 2x32"),
                          ("big", "--size 'big': expected HEIGHTxWIDTH or FRAMESxHEIGHTxWIDTH in pixels")]:
        assert main(["export", "--preset", "tiny", "--size", size, "--out", str(tmp_path / "s.mobilepkg")]) == 2
        assert message in capsys.readouterr().err
    assert main(["export", "--preset", "tiny", "--coreml-size", "1x2x3x4", "--out", str(tmp_path / "s.mobilepkg")]) == 2
    assert "--size '1x2x3x4': expected" in capsys.readouterr().err  # the same option under its Core ML name
    assert list(tmp_path.iterdir()) == []
    assert main(["generate", "--package", str(tmp_path / "none.mobilepkg"), "--prompt", "x"]) == 2
    assert "no such package" in capsys.readouterr().err


def test_calibration_observes_each_step_where_the_pipeline_calls_it(tiny_pipe):
    from export.lowering.calibration import observe_pipeline_runs

    prompts = ["a red circle moving right", "a blue square moving up"]
    steps = [CallRecorder(tiny_pipe.velocity_for_step(i)) for i in range(4)]
    decoder = CallRecorder(tiny_pipe.vae_decoder)
    observe_pipeline_runs(tiny_pipe, steps, decoder, prompts, max_decoder_frames=3)
    assert [[round(float(args[1]), 4) for args in s.calls] for s in steps] == [[1.0] * 2, [0.75] * 2, [0.5] * 2, [0.25] * 2]
    # the observers computed the steps, and the decoded frames are spread over both runs (2 x 4 frames, every 2nd)
    second = tiny_pipe(prompts[1], generator=torch.Generator().manual_seed(1), output_type="latent").latents
    assert len(decoder.calls) == 4 and all(z.shape == (1, 4, 4, 4) for z, in decoder.calls)
    assert torch.allclose(decoder.calls[2][0], second[:, :, 0]) and torch.allclose(decoder.calls[3][0], second[:, :, 2])
    sized = [CallRecorder(tiny_pipe.velocity_for_step(i)) for i in range(4)]
    sized_decoder = CallRecorder(tiny_pipe.vae_decoder)
    observe_pipeline_runs(tiny_pipe, sized, sized_decoder, prompts[:1], size=(2, 16, 32))
    assert all(s.calls[0][0].shape == (1, 4, 2, 2, 4) for s in sized)
    assert [z.shape for z, in sized_decoder.calls] == [(1, 4, 2, 4)] * 2
    with pytest.raises(ValueError, match="3 step observers for 4 denoising steps"):
        observe_pipeline_runs(tiny_pipe, sized[:3], sized_decoder, prompts)


def test_observing_the_pipeline_calibrates_as_replaying_its_calls(tiny_pipe):
    """int8 observers in the UNet's place see what the float pipeline feeds it: their ranges are those of
    replaying the float pipeline's recorded calls (the old two-pass calibration)."""
    from export.lowering.calibration import observe_pipeline_runs
    from export.lowering.executorch import convert_int8, prepare_int8, quantize_int8_module

    prompts = ["a red circle moving right", "a blue square moving up"]
    recorded = CallRecorder(tiny_pipe.unet)
    observe_pipeline_runs(tiny_pipe, [recorded] * 4, lambda z: z, prompts)
    observer = prepare_int8(tiny_pipe.unet, recorded.calls[0])
    observe_pipeline_runs(tiny_pipe, [observer] * 4, lambda z: z, prompts)
    observed, replayed = convert_int8(observer), quantize_int8_module(tiny_pipe.unet, recorded.calls)
    assert len(recorded.calls) == 8
    for args in recorded.calls:
        assert psnr(observed(*args), replayed(*args)) > 100


@pytest.mark.slow
def test_int8_package_passes_its_gate(tmp_path, tiny_pipe):
    """The int8 lowering path end to end (the demo model's int8 frames are tests/test_int8.py's)."""
    manifest = export_package(tiny_pipe, tmp_path / "q.mobilepkg", quantize="int8", check=True,
                              calibration_prompts=2, log=lambda s: None)
    assert manifest["quantization"]["executorch"] == {"text_encoder": "none", "unet": "int8", "vae_decoder": "int8"}
    parity = manifest["targets"]["executorch"]["parity"]
    assert parity["passed"] and parity["pipeline_frames_db"] >= INT8_FRAMES_MIN_DB
    unet = manifest["targets"]["executorch"]["components"]["unet"]
    fp32_weight_bytes = 4 * sum(p.numel() for p in tiny_pipe.unet.parameters())
    assert unet["bytes"] < 0.6 * fp32_weight_bytes and unet["delegation"]["main"]["flop_fraction_delegated"] == 1.0


def test_checked_frames_spread_over_a_video_too_large_for_its_vector():
    from types import SimpleNamespace

    from export.lowering.package_writer import checked_frames

    assert checked_frames(SimpleNamespace(num_frames=16, height=320, width=512)) == [0, 5, 10, 15]
    assert checked_frames(SimpleNamespace(num_frames=16, height=64, width=64)) == list(range(16))  # 192 KB: all
    assert checked_frames(SimpleNamespace(num_frames=3, height=1024, width=1024)) == [0, 1, 2]


def test_check_of_a_large_video_decodes_a_few_frames_and_compares_the_latents_whole(tmp_path, tiny_pipe, monkeypatch,
                                                                                   capsys):
    """As at 0.6B (sixteen 512x320 frames, ~11 s each in eager PyTorch): --check decodes CHECKED_FRAMES
    of the video in eager and in the package, the pipeline vector holds no frames, and inspect says so."""
    from export.lowering import package_writer

    monkeypatch.setattr(package_writer, "VECTOR_FRAMES_MAX_BYTES", 0)
    monkeypatch.setattr(package_writer, "CHECKED_FRAMES", 2)
    batches = []  # frames per eager decoder call (all frames at once at this size)
    tiny_pipe.vae_decoder.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    lines = []
    manifest = export_package(tiny_pipe, tmp_path / "c.mobilepkg", check=True, log=lines.append)
    parity = manifest["targets"]["executorch"]["parity"]
    assert parity["checked_frames"] == [0, 3] and parity["passed"]
    assert parity["pipeline_frames_db"] >= 60 and parity["pipeline_latents_db"] >= 60
    assert "frames" not in manifest["test_vectors"]["pipeline"]["outputs"]
    assert 2 in batches and 4 not in batches  # eager decoded the two checked frames, never the whole video
    assert any("(2 of 4 frames decoded)" in line for line in lines)
    assert main(["inspect", str(tmp_path / "c.mobilepkg")]) == 0
    assert "(frames 0, 3 of 4)" in capsys.readouterr().out


def test_generate_prints_only_its_own_lines(step_aware_package, tmp_path):
    """No torchao load failures, torch deprecation warnings or ExecuTorch cpuinfo lines: only ours."""
    import subprocess
    import sys

    out = tmp_path / "v.npy"
    proc = subprocess.run([sys.executable, "-m", "mobile_sdk.cli", "generate", "--package", str(step_aware_package[1]),
                           "--prompt", "a red circle moving right", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).replace("\r", "\n").splitlines() if ln.strip()]
    ours = ("wrote ", "denoising", "note: ")
    assert [ln for ln in lines if not ln.startswith(ours)] == []
    assert out.is_file()


def test_export_never_replaces_what_it_did_not_write(tmp_path, capsys):
    folder = tmp_path / "photos.mobilepkg"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    assert main(["export", "--preset", "tiny", "--out", str(folder)]) == 2
    assert "exists and is not a package; refusing to replace it" in capsys.readouterr().err
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    pkg = tmp_path / "old.mobilepkg"
    pkg.mkdir()
    (pkg / "manifest.json").write_text("{}")
    assert main(["export", "--preset", "tiny", "--out", str(pkg)]) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err
    assert (pkg / "manifest.json").read_text() == "{}"


def test_garbage_program_with_a_matching_checksum_is_an_error_not_an_abort(pkg_copy):
    """ExecuTorch aborts the process on some garbage; the header is checked before it sees the bytes."""
    import hashlib

    from mobile_sdk.runtime import ExecuTorchProgram

    garbage = bytes(range(256)) * 64
    (pkg_copy / "executorch/unet.pte").write_bytes(garbage)
    m = json.loads((pkg_copy / "manifest.json").read_text())
    m["files"]["executorch/unet.pte"] = {"sha256": hashlib.sha256(garbage).hexdigest(), "bytes": len(garbage)}
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    with open_package(pkg_copy) as pkg:  # checksums pass
        with pytest.raises(PackageError, match="unet.pte: ExecuTorch cannot load this program: not an ExecuTorch program"):
            ExecuTorchProgram(pkg.path("executorch/unet.pte"))


def test_a_killed_export_leaves_nothing_for_long(tmp_path):
    from mobile_sdk.atomic import atomic_dir

    stale = tmp_path / ".x.mobilepkg.999999999.abc.tmp"  # a pid that cannot be running
    stale.mkdir()
    with atomic_dir(tmp_path / "x.mobilepkg") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mobilepkg"]


def test_zip_is_checked_against_its_manifest_before_extracting(step_aware_package, tmp_path):
    _, path, manifest = step_aware_package
    src = path.with_name(path.name + ".zip")
    bomb = tmp_path / "bomb.mobilepkg.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("executorch/unet.pte"):
                data = b"\0" * (50 << 20)  # compresses to almost nothing; the manifest lists a much smaller file
            zout.writestr(info.filename, data)
    before = set(Path(tempfile.gettempdir()).glob("mobilepkg-*"))
    with pytest.raises(PackageError, match=r"bomb.mobilepkg.zip: entry '.*executorch/unet.pte' is 52428800 bytes, the manifest says"):
        open_package(bomb)
    assert set(Path(tempfile.gettempdir()).glob("mobilepkg-*")) == before  # nothing left behind
    extra = tmp_path / "extra.mobilepkg.zip"
    shutil.copy(src, extra)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("tiny.mobilepkg/run_me.sh", "echo hi")
    with pytest.raises(PackageError, match=r"entry 'tiny.mobilepkg/run_me.sh' is not listed in the manifest"):
        open_package(extra)


def test_generate_from_a_zip_leaves_no_extracted_copy(step_aware_package, tmp_path):
    import subprocess
    import sys

    zip_path = step_aware_package[1].with_name(step_aware_package[1].name + ".zip")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    ok = subprocess.run([sys.executable, "-m", "mobile_sdk.cli", "generate", "--package", str(zip_path), "--prompt", "x",
                         "--out", str(tmp_path / "v.npy")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([sys.executable, "-m", "mobile_sdk.cli", "generate", "--package", str(zip_path), "--prompt", "x",
                             "--frames", "2", "--out", str(tmp_path / "w.npy")], capture_output=True, text=True, env=env)
    assert failed.returncode == 2 and f"no size 2x32x32 (frames x height x width) in this package; it was exported for 4x32x32, {EXTRA}" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
    assert list(scratch.iterdir()) == []


def test_a_package_runs_only_the_steps_it_was_exported_for(step_aware_package):
    from mobile_sdk.errors import ConfigError

    pte = pipeline_from_package(step_aware_package[1])
    with pytest.raises(ConfigError, match="exported for 4 denoising steps; got 2"):
        pte("x", num_inference_steps=2)


def test_sizes_must_start_with_the_default_size(pkg_copy, engine_cli):
    """The top level is what version 1 and 2 readers run: a manifest whose sizes[0] differs is refused."""
    from tests.engine_fixtures import run_cli

    m = json.loads((pkg_copy / "manifest.json").read_text())
    m["sizes"][0]["steps"], m["sizes"][1]["steps"] = m["sizes"][1]["steps"], m["sizes"][0]["steps"]
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"manifest.json: \$.sizes\[0\] must be the default size"):
        open_package(pkg_copy, verify=False)
    code, _, err = run_cli(engine_cli, "--package", pkg_copy, "--self-test", "--no-verify", check=False)
    assert code == 2 and "sizes[0] must be the default size" in err


def test_test_vector_shapes_are_checked_when_opening(pkg_copy):
    m = json.loads((pkg_copy / "manifest.json").read_text())
    m["test_vectors"]["vae_decoder"]["inputs"]["latents"]["shape"] = [1, 4, 4, 5]
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=r"test_vectors.vae_decoder.inputs.latents: shape \[1, 4, 4, 5\] float32 is 320 bytes"):
        open_package(pkg_copy)


def test_shared_fixture_tests_run_in_their_xdist_group(request, step_aware_package):
    """Under the README's `-n 2 --dist loadgroup`, a test of an expensive fixture carries its group, so xdist
    sends it to the worker that builds that fixture (a pytest whose items ignore the group built each twice)."""
    if not getattr(request.config.option, "loadgroup", False):  # what xdist sets on a worker under loadgroup
        pytest.skip("runs under pytest-xdist's --dist loadgroup only")
    assert request.node.nodeid.endswith("@tiny_package")
