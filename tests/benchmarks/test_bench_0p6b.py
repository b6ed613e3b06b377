"""The 0.6B preset (snapgen-v-0.6b, 16 frames at 512x320) on the host: export wall time and peak memory, one
UNet call, one decoded frame, and the 4-step video, from its ExecuTorch package (fp32; int8 when given).

Long: the export alone takes many minutes on 2 cores. Reuse packages you already have:
    BENCH_0P6B_PACKAGE=out/0p6b.mobilepkg [BENCH_0P6B_INT8_PACKAGE=out/0p6b-int8.mobilepkg] \\
    pytest tests/benchmarks/test_bench_0p6b.py --benchmark-only --benchmark-json=out/0p6b.json
Without BENCH_0P6B_PACKAGE the export benchmark writes one (low-memory mode, the default at this size, with
its workers beside the test vectors when the memory allows).
Peak memory is the largest sum of RSS (and of anonymous RSS, which the kernel cannot drop) over the exporting
process and its workers, sampled every 0.2 s.

The other exports the README reports (Core ML mixed-bit, --check, int8) take 6-15 min each; name the ones
to run: BENCH_0P6B_EXPORTS=coreml-mixed3.5,executorch-check (or "all"). Each records its wall, peak and,
for --check, whether the gate passed: on random weights the Core ML mixed-bit check is refused.
`executorch-limited` runs the fp32 export (--no-overlap) inside a memory cgroup whose hard limit is twice the
UNet's fp32 weights (needs root; skipped otherwise): it passes only if the kernel never had to kill it.
"""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.runtime import pipeline_from_package

PRESET = "snapgen-v-0.6b"
PROMPT = "a red circle moving right"
EXPORT: dict = {}  # the `package` fixture's export measurement, when it ran one


def _tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) bytes of `pid` and all its descendants (workers included, also those a background
    thread started: each thread lists its own children). Anonymous memory is what the kernel cannot drop;
    the rest of RSS is mapped files, such as a worker's weights (page cache)."""
    rss = anon = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return rss, anon


@dataclass
class Run:
    wall: float  # seconds
    peak_rss: int  # bytes, largest sum over the process tree, sampled every 0.2 s
    peak_anon: int  # bytes, the same for anonymous memory
    code: int
    err: str

    def figures(self) -> dict:
        return {"wall(s)": round(self.wall, 1), "peak_rss(GB)": round(self.peak_rss / 1e9, 2),
                "peak_anon(GB)": round(self.peak_anon / 1e9, 2)}


def run_measured(cmd: list[str]) -> Run:
    """A command run to completion and measured; its failure fails the test."""
    run = _run_sampled(cmd)
    if run.code:
        pytest.fail(f"{' '.join(cmd)} failed: {_last_line(run.err) or run.code}")
    return run


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def _run_sampled(cmd: list[str], cgroup: Path | None = None) -> Run:
    """A command run to completion (inside `cgroup` when given) and measured."""
    start = time.perf_counter()
    join = (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=join)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            peak[:] = map(max, peak, _tree_memory(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    return Run(time.perf_counter() - start, peak[0], peak[1], proc.returncode, err)


@contextlib.contextmanager
def memory_cgroup(limit: int):
    """A memory cgroup of its own with a hard `limit` in bytes and no swap (cgroup v2 or v1's memory
    controller; needs root). Yields its folder, and skips the test where none can be made."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").is_file():
        files = {"memory.max": limit, "memory.swap.max": 0}
    else:
        root = root / "memory"
        files = {"memory.limit_in_bytes": limit}  # then memory + swap, where the kernel accounts swap
        if (root / "memory.memsw.limit_in_bytes").is_file():
            files["memory.memsw.limit_in_bytes"] = limit
    group = root / f"mobile-sdk-bench-{os.getpid()}"
    try:
        group.mkdir()
        for name, value in files.items():
            (group / name).write_text(str(value))
    except OSError as e:
        pytest.skip(f"no memory cgroup to run in ({e})")
    try:
        yield group
    finally:
        group.rmdir()


def _export_cmd(out: Path, *args: str) -> list[str]:
    """`mobile-sdk export` of the 0.6B preset to `out`, from this interpreter's environment."""
    return [str(Path(sys.executable).with_name("mobile-sdk")), "export", "--preset", PRESET, "--out", str(out), *args]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    given = os.environ.get("BENCH_0P6B_PACKAGE")
    if given:
        return Path(given)
    path = tmp_path_factory.mktemp("0p6b") / "0p6b.mobilepkg"
    EXPORT["run"] = run_measured(_export_cmd(path))
    return path


def test_export_fp32(benchmark, package):
    """Wall time and peak memory of `mobile-sdk export --preset snapgen-v-0.6b` (ExecuTorch fp32, no --check)."""
    if not EXPORT:
        pytest.skip("BENCH_0P6B_PACKAGE was given: the export was not run here")
    run, unet_weights = EXPORT["run"], _unet_fp32_bytes()
    benchmark.extra_info.update({**run.figures(), "unet_fp32_weights(GB)": round(unet_weights / 1e9, 2),
                                 "peak_over_unet_weights": round(run.peak_rss / unet_weights, 2)})
    benchmark.pedantic(lambda: None, rounds=1)  # the figures are the export's, in extra_info


# name -> (export arguments, whether its gate is expected to refuse the package, whether it runs inside a
# memory cgroup limited to twice the UNet's fp32 weights: the goal for the peak, held by the kernel)
EXPORTS = {
    "executorch-check": (["--check"], False, False),
    "executorch-limited": (["--no-overlap"], False, True),
    "int8-check": (["--quantize", "int8", "--calibration-prompts", "2", "--check"], False, False),
    "coreml-mixed3.5": (["--target", "coreml", "--quantize", "palettize-mixed3.5"], False, False),
    # random weights at 3.5 bits fall below the 30 dB frames gate (README): the refusal is the expected end
    "coreml-mixed3.5-check": (["--target", "coreml", "--quantize", "palettize-mixed3.5", "--check"], True, False),
}


def _unet_fp32_bytes() -> int:
    return 4 * sum(p.numel() for p in VideoPipeline.from_preset(PRESET).unet.parameters())


@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_variant(benchmark, tmp_path, name):
    """Wall time, peak memory and gate outcome of one more 0.6B export (BENCH_0P6B_EXPORTS names them)."""
    wanted = os.environ.get("BENCH_0P6B_EXPORTS", "")
    if name not in wanted.split(",") and wanted != "all":
        pytest.skip(f"set BENCH_0P6B_EXPORTS={name} (or all) to run this {name} export")
    args, expect_refused, limited = EXPORTS[name]
    out = tmp_path / f"{name}.mobilepkg"
    cmd = _export_cmd(out, *args)
    limit = 2 * _unet_fp32_bytes() if limited else None
    with memory_cgroup(limit) if limited else contextlib.nullcontext() as group:
        run = _run_sampled(cmd, group)
    if run.code == -signal.SIGKILL and limited:
        pytest.fail(f"killed at the memory limit of {limit / 1e9:.2f} GB (twice the UNet's fp32 weights)")
    refused = run.code != 0 and "needs >=" in run.err
    if run.code and not (refused and expect_refused):
        pytest.fail(f"{' '.join(cmd)} failed: {_last_line(run.err) or run.code}")
    assert refused == expect_refused, f"expected the gate to {'refuse' if expect_refused else 'pass'}: {_last_line(run.err)}"
    assert refused or (out / "manifest.json").is_file()
    benchmark.extra_info.update({"export": " ".join(args), **run.figures(),
                                 "memory_limit(GB)": round(limit / 1e9, 2) if limit else None,
                                 "gate": ("refused: " + _last_line(run.err)) if refused else
                                 ("passed" if "--check" in args else "none"),
                                 "package(MB)": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
                                                      / 1e6, 1) if out.exists() else None})
    benchmark.pedantic(lambda: None, rounds=1)  # the figures are the export's, in extra_info


@pytest.fixture(scope="module")
def runtimes(package):
    out = {"fp32": pipeline_from_package(package)}
    if os.environ.get("BENCH_0P6B_INT8_PACKAGE"):
        out["int8"] = pipeline_from_package(os.environ["BENCH_0P6B_INT8_PACKAGE"])
    for r in out.values():
        r.set_progress_bar_config(disable=True)
    return out


def _runtime(runtimes, mode):
    if mode not in runtimes:
        pytest.skip(f"no {mode} package (set BENCH_0P6B_INT8_PACKAGE)")
    return runtimes[mode]


def _unet_args(runtime):
    shape = runtime.latent_shape()
    hidden, _ = runtime.text_encoder(runtime.tokenizer(PROMPT))
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)), torch.tensor([0.5]), hidden


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_unet_call(benchmark, runtimes, mode):
    runtime = _runtime(runtimes, mode)
    args = _unet_args(runtime)
    benchmark.extra_info.update(model=PRESET, mode=mode, threads=torch.get_num_threads(), frames=args[0].shape[2])
    out = benchmark.pedantic(runtime.unet_for_step(0), args=args, rounds=3, warmup_rounds=1)
    assert out.shape == args[0].shape and torch.isfinite(out).all()


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_decoder_frame(benchmark, runtimes, mode):
    runtime = _runtime(runtimes, mode)
    shape = runtime.latent_shape()
    z = torch.randn(1, shape[1], shape[3], shape[4], generator=torch.Generator().manual_seed(0))
    benchmark.extra_info.update(model=PRESET, mode=mode, threads=torch.get_num_threads())
    out = benchmark.pedantic(runtime.vae_decoder, args=(z,), rounds=5, warmup_rounds=1)
    f = runtime.config.vae.downsample_factor
    assert out.shape[-2:] == (shape[3] * f, shape[4] * f)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_video_4_steps(benchmark, runtimes, mode):
    runtime = _runtime(runtimes, mode)
    benchmark.extra_info.update(model=PRESET, mode=mode, steps=4, threads=torch.get_num_threads())
    out = benchmark.pedantic(lambda: runtime(PROMPT, generator=torch.Generator().manual_seed(0)), rounds=1)
    assert out.frames.shape[1] == 16
