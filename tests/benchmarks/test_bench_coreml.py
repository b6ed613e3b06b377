"""Core ML conversion time of the `small` model (fp16, and 4-bit palettized), one round each.

Run: pytest tests/benchmarks/test_bench_coreml.py --benchmark-only
"""
import pytest

from export.lowering.package_writer import export_package

from .test_bench_executorch import _small_pipe


@pytest.mark.parametrize("quantize", ["none", "palettize4"])
def test_coreml_conversion(benchmark, tmp_path, quantize):
    pipe = _small_pipe()
    counter = iter(range(100))

    def convert():
        return export_package(pipe, tmp_path / f"small-{next(counter)}.mobilepkg", targets=("coreml",),
                              quantize=quantize, log=lambda s: None)

    manifest = benchmark.pedantic(convert, rounds=1, iterations=1)
    comps = manifest["targets"]["coreml"]["components"]
    benchmark.extra_info.update({f"{c}_bytes": v["bytes"] for c, v in comps.items()})
    benchmark.extra_info.update({f"{c}_fp16_bytes": v["fp16_bytes"] for c, v in comps.items()})
    assert all(v["bytes"] > 0 for v in comps.values())
