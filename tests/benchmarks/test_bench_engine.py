"""The native engine against the Python runtime on the shipped demo package: one whole generation
(prompt to uint8 frames), same programs, same threads, same prompt and seed.

Run: pytest tests/benchmarks/test_bench_engine.py --benchmark-only   (exports the demo package: minutes)

The Python side is timed by pytest-benchmark in-process. The engine is timed by itself on the device it
runs on (`mvd_engine_cli --benchmark`: warm-up excluded, 10 % trimmed mean, per stage and per step, peak
RSS), since a process start would otherwise be counted; its figures are in `extra_info`, and
pytest-benchmark's own numbers for it are whole CLI runs (process start and package load included).
"""
import json

import pytest
import torch

from mobile_sdk.noise import portable_normal
from mobile_sdk.runtime import pipeline_from_package
from tests.engine_fixtures import PROMPT, engine_cli, run_cli  # noqa: F401 - fixtures

THREADS = 2
SEED = 7


def test_bench_python_runtime_generation(benchmark, demo_package):
    torch.set_num_threads(THREADS)
    pipe = pipeline_from_package(demo_package)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.from_numpy(portable_normal(SEED, pipe.latent_shape()))
    pipe(PROMPT, latents=noise.clone())  # warm-up: first calls load the methods
    out = benchmark.pedantic(lambda: pipe(PROMPT, latents=noise.clone()), rounds=10, iterations=1)
    benchmark.extra_info.update({f"{k.removesuffix('_ms')}(ms)": v for k, v in out.timings_ms.items()})


def test_bench_engine_generation(benchmark, demo_package, engine_cli, tmp_path):  # noqa: F811
    result = tmp_path / "engine.json"
    args = ["--package", demo_package, "--prompt", PROMPT, "--seed", SEED, "--threads", THREADS,
            "--warmup", 2, "--runs", 10, "--benchmark", result]
    benchmark.pedantic(lambda: run_cli(engine_cli, *args), rounds=1, iterations=1)
    report = json.loads(result.read_text())
    benchmark.extra_info.update(report["metrics"])
    benchmark.extra_info.update({f"{k}_trimmean(ms)": v["trimmean"] for k, v in report["stages_ms"].items()})
    assert report["runs"] == 10
