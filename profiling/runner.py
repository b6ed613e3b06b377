"""Our benchmark runner (mobile_sdk/engine/tools/et_bench_runner.cpp, a target of the engine's CMake
project): building it on the host, reading its output, and the statistics every measured table uses.

The host build links the executorch wheel's shared libraries through its CMake package, so host and
phone tables are measured by the same C++ code (the phone's copy is cross-built with the Android NDK,
see profiling/README.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mobile_sdk.engine import build as engine_build
from mobile_sdk.errors import SDKError

RUNNER_NAME = engine_build.RUNNER_NAME
TRIM_FRACTION = 0.1  # the statistic of measured tables: mean of the runs left after dropping 10% at each end


class RunnerError(SDKError):
    """The benchmark runner could not be built or did not produce a result."""


def build_host_runner(log=print) -> Path:
    """The runner built with the engine (cached per source, executorch version and installation)."""
    try:
        return engine_build.runner_path(log=log)
    except engine_build.EngineBuildError as e:
        raise RunnerError(str(e)) from None


def parse_runner_output(text: str, where: str) -> dict:
    """The runner prints log lines on stderr and one JSON object on stdout (its last line)."""
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RunnerError(f"{where}: the runner printed no result:\n{text[-2000:]}")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise RunnerError(f"{where}: unreadable runner result ({e}): {lines[-1][:200]}") from None
    if not result.get("times_ms"):
        raise RunnerError(f"{where}: the runner result has no timings")
    return result


def summarize(rounds_ms: list[list[float]]) -> dict:
    """Statistics of repeated runs in one or more runner processes ("rounds", see measure_interleaved).

    mean_ms: the median over rounds of each round's trimmed mean (10 % cut at each end). Separate
    processes matter: on a shared machine one process can sit on a slow core or a bad page placement
    for all its runs (seen here: the same program 3.4 ms in one process, 4.4 ms in the next).
    p10/p50/p90: over all runs pooled; count: all runs.
    """
    means = []
    for times in rounds_ms:
        t = np.sort(np.asarray(times, dtype=float))
        k = int(len(t) * TRIM_FRACTION)
        means.append((t[k: len(t) - k] if len(t) > 2 * k else t).mean())
    pooled = np.concatenate([np.asarray(r, dtype=float) for r in rounds_ms])
    p10, p50, p90 = np.percentile(pooled, [10, 50, 90])
    return {"count": int(len(pooled)), "mean_ms": float(np.median(means)), "p10_ms": float(p10), "p50_ms": float(p50),
            "p90_ms": float(p90)}


def measure_interleaved(device, programs: dict[str, Path], warmup: int, runs: int, threads: int, rounds: int,
                        done: dict[str, list[dict]] | None = None, on_result=None, etdumps: dict[str, Path] | None = None,
                        progress: bool = True, desc: str = "measuring") -> dict[str, list[dict]]:
    """Runner results, `rounds` per program, measured round-robin: round r runs every program once before
    round r + 1 starts. A slow spell of the machine (seen here: a minute at half speed on a shared VM)
    then hits every program in one round or two, and the median over rounds discards it.

    `done` holds results from an interrupted run (kept); `on_result(key, results)` is called after every
    run, so the caller can persist progress; each program's last round writes its ETDump."""
    results = {k: list((done or {}).get(k, [])) for k in programs}
    todo = sum(max(0, rounds - len(v)) for v in results.values())
    from tqdm import tqdm

    with tqdm(total=todo, desc=desc, disable=not progress) as bar:
        for r in range(rounds):
            for key, path in programs.items():
                if len(results[key]) > r:
                    continue
                dump = (etdumps or {}).get(key) if r == rounds - 1 else None
                results[key].append(device.run(path, warmup, runs, threads, dump))
                bar.update()
                if on_result:
                    on_result(key, results[key])
    return results
