"""Plan evaluations per second of the latency predictor, the search's inner loop (target >= 50k/s).

Run: pytest tests/benchmarks/test_bench_search.py --benchmark-only
"""
import numpy as np

from export.nas.model_blocks import model_blocks
from export.nas.efficiency_predictor import LatencyPredictor
from mobile_sdk.config import load_preset
from tests.test_latency_table import hand_table

N = 10_000


def test_predictor_plans_per_second(benchmark):
    blocks = model_blocks(load_preset("snapgen-v-0.6b"))
    predictor = LatencyPredictor(hand_table(blocks), blocks)
    codes = np.random.default_rng(0).integers(0, 5, size=(N, blocks.steps, len(blocks.slots))).astype(np.int8)

    def evaluate():
        return predictor.denoise_ms(codes), predictor.peak_memory_bytes(codes)

    latency, memory = benchmark(evaluate)
    benchmark.extra_info.update(preset="snapgen-v-0.6b", slots=len(blocks.slots), steps=blocks.steps, plans_per_call=N,
                                step_aware=True)
    assert latency.shape == memory.shape == (N,)
