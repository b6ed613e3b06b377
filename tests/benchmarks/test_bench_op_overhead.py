"""What one XNNPACK operator costs beyond its arithmetic, untraced: chains of 100, 400 and 1600 cheap
elementwise ops on 64 floats, lowered by our `lower_program` and timed by our C++ runner (1 thread,
interleaved rounds), and the same chains' one traced call (ETDump's Method::execute). The README's
performance section takes both from here: the untraced cost per operator, and the traced one, which shows
that the gaps between operators in an ETDump breakdown are mostly the tracer's own.

Run: pytest tests/benchmarks/test_bench_op_overhead.py --benchmark-only
"""
import statistics
import subprocess

import torch

from export.lowering.executorch import MethodSpec, lower_program
from profiling.breakdown import etdump_events
from profiling.runner import build_host_runner, parse_runner_output

LENGTHS = (100, 400, 1600)
ROUNDS, RUNS = 7, 200


class _Chain(torch.nn.Module):
    """n alternating adds and multiplies by constants: XNNPACK keeps each as its own operator."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x):
        for i in range(self.n):
            x = x * 1.0001 if i % 2 else x + 0.5
        return x


def _traced_ms(etdump) -> float:
    (ms,) = [ms for name, ms in etdump_events(etdump) if name == "Method::execute"]
    return ms


def test_per_operator_overhead(benchmark, tmp_path):
    runner = build_host_runner(log=lambda s: None)
    programs = {}
    for n in LENGTHS:
        lowered = lower_program({"forward": MethodSpec(_Chain(n), (torch.randn(1, 64),), ["x"], ["y"])}, log=lambda s: None)
        assert lowered.delegation["forward"]["ops_outside"] == 0
        programs[n] = tmp_path / f"chain{n}.pte"
        programs[n].write_bytes(lowered.data)
    times: dict[int, list[float]] = {n: [] for n in LENGTHS}
    traced: dict[int, list[float]] = {n: [] for n in LENGTHS}

    def one_round():
        for n, path in programs.items():
            dump = tmp_path / f"chain{n}.etdp"
            out = subprocess.run([str(runner), "--model", str(path), "--warmup", "20", "--runs", str(RUNS), "--threads", "1",
                                  "--etdump", str(dump)], capture_output=True, text=True, check=True).stdout
            times[n].append(statistics.median(parse_runner_output(out, str(path))["times_ms"]))
            traced[n].append(_traced_ms(dump))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    span = LENGTHS[-1] - LENGTHS[0]
    for label, runs in (("untraced", times), ("traced", traced)):
        med = {n: statistics.median(v) for n, v in runs.items()}
        benchmark.extra_info.update({f"{label}_chain{n}_median(ms)": round(ms, 4) for n, ms in med.items()})
        benchmark.extra_info[f"{label}_per_operator(us)"] = round((med[LENGTHS[-1]] - med[LENGTHS[0]]) * 1e3 / span, 3)
    assert benchmark.extra_info["untraced_per_operator(us)"] > 0
