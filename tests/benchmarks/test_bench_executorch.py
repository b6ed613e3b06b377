"""Host speed of the `small` model: one UNet step in eager vs .pte fp32 vs .pte int8, and 4-step generation.

Run: pytest tests/benchmarks/test_bench_executorch.py --benchmark-only   (exports take a few minutes)
"""
import pytest
import torch

from export.lowering.package_writer import export_package
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.runtime import pipeline_from_package


def _small_pipe() -> VideoPipeline:
    from mobile_sdk.errors import SDKError
    from mobile_sdk.weights import default_model_dir

    try:
        pipe = VideoPipeline.from_pretrained(default_model_dir())
    except SDKError:
        pipe = VideoPipeline.from_preset("small")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    pipe = _small_pipe()
    root = tmp_path_factory.mktemp("bench")
    out = {}
    for mode in ("none", "int8"):
        path = root / f"small-{mode}.mobilepkg"
        export_package(pipe, path, quantize=mode, log=lambda s: None)
        runtime = pipeline_from_package(path)
        runtime.set_progress_bar_config(disable=True)
        out[mode] = runtime
    return pipe, out


def _unet_args(pipe):
    cfg = pipe.config
    f = cfg.vae.downsample_factor
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.vae.latent_channels, cfg.num_frames, cfg.height // f, cfg.width // f, generator=g)
    hidden, _ = pipe.text_encoder(pipe.tokenizer("a red circle moving right"))
    return x, torch.tensor([0.5]), hidden


@pytest.mark.parametrize("backend", ["eager", "pte-fp32", "pte-int8"])
def test_unet_step(benchmark, packages, backend):
    pipe, runtimes = packages
    args = _unet_args(pipe)
    unet = {"eager": pipe.unet_for_step(0), "pte-fp32": runtimes["none"].unet_for_step(0),
            "pte-int8": runtimes["int8"].unet_for_step(0)}[backend]
    benchmark.extra_info.update(model=pipe.config.name, backend=backend, threads=torch.get_num_threads())
    with torch.no_grad():
        out = benchmark(unet, *args)
    assert out.shape == args[0].shape


@pytest.mark.parametrize("backend", ["eager", "pte-fp32", "pte-int8"])
def test_generation_4_steps(benchmark, packages, backend):
    pipe, runtimes = packages
    runner = {"eager": pipe, "pte-fp32": runtimes["none"], "pte-int8": runtimes["int8"]}[backend]
    benchmark.extra_info.update(model=pipe.config.name, backend=backend, steps=4)
    out = benchmark.pedantic(lambda: runner("a red circle moving right", generator=torch.Generator().manual_seed(0)),
                             rounds=5, warmup_rounds=1)
    assert out.frames.shape[1] == pipe.config.num_frames
