"""`estimated` tables for phones nobody has measured yet, from a roofline model.

Each block runs on the meta device (no weights allocated, so the 0.6B preset is instant) under a
dispatch mode that counts FLOPs (torch's flop counter: matmuls and convolutions) and bytes moved
(weights once, plus every op's output written and read once). Then

    ms = max(FLOPs / (peak_flops * compute_efficiency), bytes / (bandwidth * memory_efficiency)) + block_overhead

with the device's figures and their sources in profiling/device_specs.json. The header says
`provenance.kind = "estimated"` and quotes the method and sources, so the search reports it as such.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from export.nas.latency_table import LatencyTable, TableEntry, TableError
from export.nas.model_blocks import CALL_SIGNATURE, ElasticBlocks, ModelBlocks
from mobile_sdk import __version__

SPECS_FILE = Path(__file__).with_name("device_specs.json")


def device_specs() -> dict[str, dict]:
    return json.loads(SPECS_FILE.read_text())


class _BytesCounter(TorchDispatchMode):
    """Bytes of every op output (each written once and read once), and the largest single output."""

    def __init__(self, dtype_bytes: int):
        super().__init__()
        self.dtype_bytes, self.elements, self.largest = dtype_bytes, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and func not in _VIEWS:
                self.elements += t.numel()
                self.largest = max(self.largest, t.numel())
        return out

    @property
    def bytes(self) -> int:
        return 2 * self.elements * self.dtype_bytes


_VIEWS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.reshape.default,
          torch.ops.aten.permute.default, torch.ops.aten.transpose.int, torch.ops.aten.t.default,
          torch.ops.aten.expand.default, torch.ops.aten.slice.Tensor, torch.ops.aten.select.int,
          torch.ops.aten.unsqueeze.default, torch.ops.aten.squeeze.dim, torch.ops.aten.detach.default}


def block_cost(block, dtype_bytes: int) -> tuple[int, int, int, int]:
    """(FLOPs, bytes moved, weight bytes, peak memory bytes) of one block, counted on the meta device.

    Peak memory: the weights plus three of the largest activation (an op's input, output and workspace)."""
    module = block.make_meta_module().eval()
    weight_bytes = sum(p.numel() for p in module.parameters()) * dtype_bytes
    flops = FlopCounterMode(display=False)
    moved = _BytesCounter(dtype_bytes)
    with torch.no_grad(), flops, moved:
        module(*block.inputs_meta)
    peak = weight_bytes + 3 * moved.largest * dtype_bytes
    return flops.get_total_flops(), moved.bytes + weight_bytes, weight_bytes, peak


def estimate_table(blocks: ModelBlocks | ElasticBlocks, device: str, preset: str) -> LatencyTable:
    """Every entry of `blocks`: one model's, or with ElasticBlocks every sub-network's at several
    resolutions (`header.elastic` lists them; `header.resolution` is the model's own)."""
    specs = device_specs()
    if device not in specs:
        raise TableError(f"{SPECS_FILE}: no device {device!r}; known: {', '.join(specs)}")
    s = specs[device]
    compute = s["peak_flops_per_s"] * s["compute_efficiency"]
    memory = s["memory_bytes_per_s"] * s["memory_efficiency"]
    entries = {}
    for sig, block in blocks.blocks.items():
        if sig == CALL_SIGNATURE:
            ms, peak, weights = s["call_overhead_ms"], 0, 0
        else:
            flops, moved, weights, peak = block_cost(block, s["dtype_bytes"])
            ms = max(flops / compute, moved / memory) * 1e3 + s["block_overhead_ms"] + s["call_overhead_ms"]
        entries[sig] = TableEntry(count=1, mean_ms=ms, p10_ms=ms, p50_ms=ms, p90_ms=ms, peak_memory_bytes=int(peak),
                                  weight_bytes=int(weights))
    cfg = blocks.config
    method = ("roofline: max(FLOPs / (peak_flops x compute_efficiency), bytes / (bandwidth x memory_efficiency)) "
              "+ per-block overhead; FLOPs and bytes counted per block on the meta device "
              f"(peak {s['peak_flops_per_s']:.3g} FLOP/s x {s['compute_efficiency']}, "
              f"{s['memory_bytes_per_s']:.3g} B/s x {s['memory_efficiency']}); see profiling/device_specs.json")
    header = {
        "device": s["device"], "runtime": s["runtime"], "compute_unit": s["compute_unit"], "threads": s["threads"],
        "sdk_version": __version__, "date": datetime.date.today().isoformat(),
        "measurement": {"warmup": 0, "runs": 0, "statistic": "model estimate (no runs)"},
        "provenance": {"kind": "estimated", "method": method, "sources": s["sources"], "device_key": device},
        "preset": preset, "quantize": "none",
        "resolution": {"height": cfg.height, "width": cfg.width, "num_frames": cfg.num_frames},
        "status": "complete",
    }
    if isinstance(blocks, ElasticBlocks):
        header["elastic"] = blocks.header()
    return LatencyTable(header=header, entries=entries)
