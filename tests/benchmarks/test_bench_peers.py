"""Our programs against the runtime a mobile developer would otherwise pick, on the demo model.

The UNet call (8 frames) and the VAE decoder call (one frame) run in torch eager, in our `.pte` (fp32 and
int8, XNNPACK) and in ONNX Runtime's CPU provider (fp32 from `torch.onnx.export`, and ORT's own dynamic
int8), on the same inputs (captured from a real 4-step run) with the same thread count. Every round times
each runner in turn, starting with a different one each round, so machine drift falls on all of them
alike; the median over rounds is reported, with each runner's parity (PSNR against eager, dB) and its
time relative to ONNX Runtime fp32, in `extra_info` (pytest-benchmark's own figures are whole rounds).
Two more set those against the machine: the UNet call's GFLOP/s as a share of a large GEMM's, per op class,
and single 3x3 convolutions against the same arithmetic as one GEMM and against ONNX Runtime's convolution.
Each records the host's CPU and vector ISA, on which XNNPACK's choice of kernels depends.

Run: pip install -e ".[test,bench]" && pytest tests/benchmarks/test_bench_peers.py --benchmark-only
     (PEER_THREADS, default 1; exports take a few minutes)
"""
import os
import statistics
import time

import numpy as np
import pytest
import torch

from export.lowering.calibration import default_prompts, observe_pipeline_runs
from export.lowering.delegation import graph_flops, node_flops, op_name
from export.lowering.executorch import MethodSpec, lower_program
from export.lowering.parity import psnr
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.weights import default_model_dir
from profiling.devices import host_cpu
from tests.conftest import CallRecorder

ort = pytest.importorskip("onnxruntime", reason="the peer benchmark needs the bench extra: pip install -e '.[bench]'")

THREADS = int(os.environ.get("PEER_THREADS", "1"))
ROUNDS = 11
CALLS = 5  # timed calls per runner per round
RUNNERS = ("eager", "pte-fp32", "pte-int8", "ort-fp32", "ort-int8-dynamic")


@pytest.fixture(scope="module")
def demo():
    """The demo pipeline and the calls of its int8 calibration runs (what `export --quantize int8` observes)."""
    pipe = VideoPipeline.from_pretrained(default_model_dir())
    pipe.set_progress_bar_config(disable=True)
    unet, decoder = CallRecorder(pipe.unet), CallRecorder(pipe.vae_decoder)
    observe_pipeline_runs(pipe, [unet] * pipe.config.scheduler.num_inference_steps, decoder, default_prompts(8))
    return pipe, {"unet/main": unet.calls, "vae_decoder/main": decoder.calls}


def _component(pipe, calibration, name):
    """(module, inputs, input names, calibration): inputs are a mid-trajectory call of a real run."""
    if name == "unet":
        cal = calibration["unet/main"]
        return pipe.unet.eval(), cal[2], ["sample", "timestep", "encoder_hidden_states"], cal
    cal = calibration["vae_decoder/main"]
    return pipe.vae_decoder.eval(), cal[0], ["latents"], cal


def _pte_runner(module, inputs, names, calibration, quantize, path):
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    lowered = lower_program({"forward": MethodSpec(module, inputs, names, ["out"], calibration)}, quantize,
                            log=lambda s: None)
    path.write_bytes(lowered.data)
    _unsafe_reset_threadpool(THREADS)
    method = Runtime.get().load_program(path).load_method("forward")
    return lambda: method.execute(inputs)[0]


def _ort_runner(path, names, inputs):
    """One ONNX model in ONNX Runtime's CPU provider at THREADS threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {n: t.numpy() for n, t in zip(names, inputs)}
    return lambda: torch.from_numpy(session.run(None, feeds)[0])


def _ort_runners(module, inputs, names, tmp):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = tmp / "model.onnx", tmp / "model-int8.onnx"
    torch.onnx.export(module, inputs, str(fp32), input_names=names, output_names=["out"])
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"ort-fp32": _ort_runner(fp32, names, inputs), "ort-int8-dynamic": _ort_runner(int8, names, inputs)}


def _interleaved_medians(benchmark, runners) -> dict[str, float]:
    """Median seconds per call of each runner over ROUNDS rounds. Each round times every runner in turn (after
    one call that warms the caches the previous runner left), starting one runner later than the round before,
    so machine drift falls on all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)

    def one_round():
        with torch.no_grad():
            for k in order:
                runners[k]()
                times[k].append(_timed(runners[k]))
        order.append(order.pop(0))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    return {k: statistics.median(v[-ROUNDS:]) for k, v in times.items()}


def _runners(demo, name, tmp):
    pipe, calibration = demo
    module, inputs, names, cal = _component(pipe, calibration, name)
    runners = {"eager": lambda: module(*inputs)}
    runners["pte-fp32"] = _pte_runner(module, inputs, names, cal, "none", tmp / "fp32.pte")
    runners["pte-int8"] = _pte_runner(module, inputs, names, cal, "int8", tmp / "int8.pte")
    runners.update(_ort_runners(module, inputs, names, tmp))
    return module, inputs, runners


@pytest.mark.parametrize("component", ["unet", "vae_decoder"])
def test_peers(benchmark, demo, component, tmp_path):
    torch.set_num_threads(THREADS)
    module, inputs, runners = _runners(demo, component, tmp_path)
    with torch.no_grad():
        reference = module(*inputs)
        parity = {k: psnr(reference, run()) for k, run in runners.items()}
    median = {k: seconds * 1e3 for k, seconds in _interleaved_medians(benchmark, runners).items()}
    benchmark.extra_info.update(component=component, cpu=host_cpu(), threads=THREADS, rounds=ROUNDS, calls_per_round=CALLS)
    for k in runners:
        benchmark.extra_info[f"{k}_median_latency(ms)"] = round(median[k], 3)
        benchmark.extra_info[f"{k}_vs_ort_fp32"] = round(median[k] / median["ort-fp32"], 3)
        benchmark.extra_info[f"{k}_psnr_vs_eager(dB)"] = round(parity[k], 1)
    assert parity["pte-fp32"] > 60 and parity["ort-fp32"] > 60


def _gemm_peak_gflops(tmp_path) -> float:
    """fp32 GFLOP/s of a large matmul (2048x1024 by 1024x1024) through XNNPACK: the machine's practical peak."""
    layer = torch.nn.Linear(1024, 1024, bias=False).eval()
    x = torch.randn(1, 2048, 1024)
    run = _pte_runner(layer, (x,), ["x"], [], "none", tmp_path / "gemm.pte")
    run()
    best = min(_timed(run) for _ in range(ROUNDS))
    return 2 * 2048 * 1024 * 1024 / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        run()
    return (time.perf_counter() - start) / CALLS


# XNNPACK operator names in ETDump for the graph ops whose FLOPs we count.
XNN_OP_OF = {"conv2d": "Convolution", "convolution": "Convolution", "linear": "Fully Connected",
             "bmm": "Batch Matrix Multiply"}


def test_unet_gflops_vs_gemm_peak(benchmark, demo, tmp_path):
    """Achieved GFLOP/s of the fp32 UNet call as a share of the GEMM peak, overall and per op class
    (ETDump: which XNNPACK operators sit furthest below the peak)."""
    from profiling.breakdown import op_times
    from profiling.devices import HostDevice

    pipe, calibration = demo
    module, inputs, names, cal = _component(pipe, calibration, "unet")
    torch.set_num_threads(THREADS)
    peak = _gemm_peak_gflops(tmp_path)
    ep = torch.export.export(module, inputs, strict=False)
    flops = graph_flops(ep.graph_module)
    by_class: dict[str, float] = {}
    for node in ep.graph_module.graph.nodes:
        if node.op == "call_function" and op_name(node) in XNN_OP_OF:
            by_class[XNN_OP_OF[op_name(node)]] = by_class.get(XNN_OP_OF[op_name(node)], 0) + node_flops(node)
    run = _pte_runner(module, inputs, names, cal, "none", tmp_path / "unet.pte")
    per_round = benchmark.pedantic(lambda: _timed(run), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    call_s = statistics.median(benchmark.stats.stats.data) / CALLS
    achieved = flops / call_s / 1e9
    dump = tmp_path / "unet.etdump"
    HostDevice(log=lambda s: None).run(tmp_path / "unet.pte", 3, 10, THREADS, etdump=dump)
    op_ms = op_times(dump)
    benchmark.extra_info.update({"cpu": host_cpu(), "threads": THREADS, "gemm_peak(GFLOP/s)": round(peak, 1), "unet_gflop": round(flops / 1e9, 3),
                                 "unet_achieved(GFLOP/s)": round(achieved, 1), "share_of_peak": round(achieved / peak, 3)})
    for cls, f in by_class.items():
        ms = sum(v for k, v in op_ms.items() if k.startswith(cls))
        if ms > 0:
            benchmark.extra_info[f"{cls}_(GFLOP/s)"] = round(f / (ms / 1e3) / 1e9, 1)
            benchmark.extra_info[f"{cls}_share_of_peak"] = round(f / (ms / 1e3) / 1e9 / peak, 3)
    benchmark.extra_info["etdump_top_ops(ms)"] = {k: round(v, 3) for k, v in sorted(op_ms.items(), key=lambda kv: -kv[1])[:8]}
    assert per_round > 0 and np.isfinite(achieved)


# (label, channels, frames, height, width): 3x3 convolutions of the demo decoder's and UNet's levels and of the
# 0.6B UNet's (its spatial size cut: the rate does not depend on it).
CONV_SHAPES = [("demo decoder 64x64", 32, 1, 64, 64), ("demo decoder 32x32", 64, 1, 32, 32),
               ("demo UNet 8 frames 8x8", 96, 8, 8, 8), ("0.6B UNet level 0", 256, 1, 40, 64),
               ("0.6B UNet level 2", 1024, 1, 10, 16)]


def test_conv_kernels_vs_gemm(benchmark, tmp_path):
    """GFLOP/s of a 3x3 convolution as XNNPACK runs it (an indirect GEMM) against the same arithmetic as one
    plain GEMM (the im2col'd input [H*W, 9C] by [9C, C], through XNNPACK's fully connected) and against ONNX
    Runtime's convolution, per shape, in interleaved rounds. Where the convolution sits far below the GEMM,
    XNNPACK's convolution kernel for this CPU is what limits our programs, not the graph we give it."""
    torch.set_num_threads(THREADS)
    runners = {}
    flops: dict[str, float] = {}
    for label, c, n, h, w in CONV_SHAPES:
        conv = torch.nn.Conv2d(c, c, 3, padding=1).eval()
        x = torch.randn(n, c, h, w)
        gemm = torch.nn.Linear(9 * c, c).eval()
        cols = torch.randn(1, n * h * w, 9 * c)
        flops[label] = 2 * 9 * c * c * n * h * w
        runners[f"{label}: xnnpack conv"] = _pte_runner(conv, (x,), ["x"], [], "none", tmp_path / f"{c}-conv.pte")
        runners[f"{label}: xnnpack gemm"] = _pte_runner(gemm, (cols,), ["x"], [], "none", tmp_path / f"{c}-gemm.pte")
        onnx = tmp_path / f"{c}-conv.onnx"
        torch.onnx.export(conv, (x,), str(onnx), input_names=["x"], output_names=["out"])
        runners[f"{label}: ort conv"] = _ort_runner(onnx, ["x"], (x,))
        with torch.no_grad():
            reference = conv(x)
        assert all(psnr(reference, runners[f"{label}: {kind} conv"]()) > 60 for kind in ("xnnpack", "ort"))
    median = _interleaved_medians(benchmark, runners)
    benchmark.extra_info.update(cpu=host_cpu(), threads=THREADS, rounds=ROUNDS)
    for k, seconds in median.items():
        label = k.split(": ")[0]
        benchmark.extra_info[f"{k}_(GFLOP/s)"] = round(flops[label] / seconds / 1e9, 1)
    for label in flops:
        conv, gemm = (benchmark.extra_info[f"{label}: xnnpack {kind}_(GFLOP/s)"] for kind in ("conv", "gemm"))
        benchmark.extra_info[f"{label}: conv_share_of_gemm"] = round(conv / gemm, 3)
    assert all(np.isfinite(seconds) and seconds > 0 for seconds in median.values())
