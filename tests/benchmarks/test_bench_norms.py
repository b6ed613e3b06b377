"""Our layout-keeping GroupNorm against the reshape rewrite it replaced, on the demo model's VAE decoder
(the norm-heaviest program): both lowered by the same `lower_program`, timed in interleaved rounds, one
thread. The claim in the README's performance section ("the decoder 28 % faster") lives here.

Run: pytest tests/benchmarks/test_bench_norms.py --benchmark-only
"""
import statistics
import time

import torch

from export.lowering.executorch import MethodSpec, lower_program
from export.lowering.parity import psnr
from mobile_sdk.models import layers
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.weights import default_model_dir
from tests.test_layers import _reshape_group_norm

ROUNDS, CALLS = 11, 5


def _reshaped_forward(self, x):
    return _reshape_group_norm(x, self.num_groups, self.eps) * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


def _program(module, inputs, path, monkeypatch, forward=None):
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    with monkeypatch.context() as m:
        if forward is not None:
            m.setattr(layers.GroupNorm, "forward", forward)
        path.write_bytes(lower_program({"forward": MethodSpec(module, inputs, ["latents"], ["out"])}, log=lambda s: None).data)
    _unsafe_reset_threadpool(1)
    method = Runtime.get().load_program(path).load_method("forward")
    return lambda: method.execute(inputs)[0]


def test_groupnorm_layout_on_the_decoder(benchmark, tmp_path, monkeypatch):
    pipe = VideoPipeline.from_pretrained(default_model_dir())
    decoder, cfg = pipe.vae_decoder.eval(), pipe.config
    f = cfg.vae.downsample_factor
    latents = (torch.randn(1, cfg.vae.latent_channels, cfg.height // f, cfg.width // f,
                           generator=torch.Generator().manual_seed(0)),)
    with torch.no_grad():
        reference = decoder(*latents)
    runners = {"layout-keeping": _program(decoder, latents, tmp_path / "ours.pte", monkeypatch),
               "reshape": _program(decoder, latents, tmp_path / "reshape.pte", monkeypatch, _reshaped_forward)}
    parity = {k: psnr(reference, run()) for k, run in runners.items()}
    times = {k: [] for k in runners}
    order = list(runners)

    def one_round():
        for k in order:
            runners[k]()
            start = time.perf_counter()
            for _ in range(CALLS):
                runners[k]()
            times[k].append((time.perf_counter() - start) / CALLS * 1e3)
        order.reverse()

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    median = {k: statistics.median(v[-ROUNDS:]) for k, v in times.items()}
    for k in runners:
        benchmark.extra_info[f"{k}_median_latency(ms)"] = round(median[k], 3)
        benchmark.extra_info[f"{k}_psnr_vs_eager(dB)"] = round(parity[k], 1)
    benchmark.extra_info["layout-keeping_vs_reshape"] = round(median["layout-keeping"] / median["reshape"], 3)
    assert min(parity.values()) > 60
