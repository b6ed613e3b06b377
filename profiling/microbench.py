"""One small ExecuTorch program per table entry, lowered exactly as `mobile-sdk export` lowers
(export.lowering.executorch: same partitioner, same PT2E int8 path)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from export.lowering.executorch import MethodSpec, lower_program
from export.nas.model_blocks import Block
from mobile_sdk.atomic import atomic_file


@dataclass(frozen=True)
class MicroProgram:
    signature: str
    path: Path
    weight_bytes: int


def program_filename(signature: str, suffix: str = ".pte") -> str:
    """Signatures hold characters awkward in paths and adb shells; name an entry's files (program,
    ETDump, Core ML model) by a hash, with `suffix`."""
    return hashlib.sha256(signature.encode()).hexdigest()[:20] + suffix


def output_names(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[str]:
    with torch.no_grad():
        out = module(*inputs)
    return [f"out{i}" for i in range(len(out))] if isinstance(out, (tuple, list)) else ["out0"]


def _weight_bytes(module: torch.nn.Module, quantize: str) -> int:
    n = sum(p.numel() for p in module.parameters())
    return n * (1 if quantize == "int8" else 4)


def build_program(block: Block, out_dir: Path, quantize: str = "none") -> MicroProgram:
    """Lower one block; the .pte is written atomically (a rerun reuses finished ones)."""
    module, inputs = block.build()
    path = lower_to_file(Path(out_dir) / program_filename(block.signature), module, inputs, quantize)
    return MicroProgram(block.signature, path, _weight_bytes(module, quantize))


def lower_to_file(path: Path, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], quantize: str) -> Path:
    """Lower `module` like the export does (int8 calibrated on `inputs`) into `path`, unless it is there."""
    if not path.exists():
        module = module.eval()
        calibration = [inputs] if quantize == "int8" else []
        spec = MethodSpec(module, inputs, [f"in{i}" for i in range(len(inputs))], output_names(module, inputs), calibration)
        lowered = lower_program({"forward": spec}, quantize, log=lambda _: None)
        with atomic_file(path) as tmp:
            tmp.write_bytes(lowered.data)
    return path
