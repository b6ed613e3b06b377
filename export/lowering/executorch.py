"""Lower components to ExecuTorch: torch.export -> (PT2E int8) -> XNNPACK partitioner -> .pte bytes.

Several methods can go into one program (the UNet gets one method per distinct temporal plan); each
method's delegation report says how much of it XNNPACK runs.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from export.lowering.delegation import delegation_report
from mobile_sdk.models.layers import GroupNorm, LayerNorm

QUANTIZE_MODES = ("none", "int8")


@dataclass
class MethodSpec:
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    calibration: list[tuple[torch.Tensor, ...]] = field(default_factory=list)


@dataclass
class LoweredProgram:
    data: bytes
    methods: dict[str, dict]  # method -> {"inputs": [...], "outputs": [...]} tensor specs
    delegation: dict[str, dict]  # method -> delegation report


def tensor_spec(name: str, t: torch.Tensor) -> dict:
    return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}


# PT2E annotates only these: int8 where the compute is. XNNPACKQuantizer's global config would also
# quantize the mul/add/cat of our mean/var norms and SiLU, and int8 (x - mean)^2 rounds small-variance
# groups to zero, so rsqrt(var + eps) explodes: the demo model's frames fell to 17 dB that way. The norms'
# own convolutions and matmuls (their means, mobile_sdk.models.layers) are left out for the same reason.
INT8_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def int8_quantizer():
    """XNNPACK's static int8 (per-channel symmetric weights, per-tensor activations) on INT8_OPS only.

    Activation ranges are min/max over the calibration inputs, not XNNPACK's default histogram (which
    clips outliers): on the demo model's frames, 42.6 against 34.2 dB (min over four prompts), and
    calibration is ten times faster.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = XNNPACKQuantizer()
    for op in INT8_OPS:
        quantizer.set_operator_type(op, config)
    for norm in (GroupNorm, LayerNorm):  # their means are convolutions / matmuls: they stay fp32
        quantizer.set_module_type(norm, None)
    return quantizer


def prepare_int8(module: nn.Module, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """`module` with PT2E int8 observers (`int8_quantizer`): it computes what `module` computes, on inputs
    shaped like `example`, and records the activation ranges of every call it sees."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    with torch.no_grad():
        ep = torch.export.export(module.eval(), example, strict=False)
    return prepare_pt2e(ep.module(), int8_quantizer())


def convert_int8(observed: nn.Module) -> nn.Module:
    """The simulated-int8 module (quantize/dequantize pairs) of an observed one: torch.export takes it as it
    is and XNNPACK turns it into int8 kernels."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return convert_pt2e(observed)


def quantize_int8_module(module: nn.Module, calibration: list[tuple[torch.Tensor, ...]]) -> nn.Module:
    """PT2E int8 of `module`, calibrated on `calibration` (batch-1 input tuples). Packages observe the
    pipeline's own calls instead (`export.lowering.calibration.observe_pipeline_runs`)."""
    if not calibration:
        raise ValueError("int8 quantization needs calibration inputs")
    observed = prepare_int8(module, calibration[0])
    with torch.no_grad():
        for inputs in calibration:
            observed(*inputs)
    return convert_int8(observed)


def export_methods(methods: dict[str, MethodSpec]) -> dict[str, torch.export.ExportedProgram]:
    """torch.export of each method: what `lower_exported` lowers (an int8 method's module is already the
    simulated-int8 one)."""
    exported = {}
    for name, spec in methods.items():
        # a simulated-int8 module is a graph already in eval mode (and refuses .eval())
        module = spec.module if isinstance(spec.module, torch.fx.GraphModule) else spec.module.eval()
        with torch.no_grad():
            exported[name] = torch.export.export(module, spec.example_inputs, strict=False)
    return exported


def method_io(methods: dict[str, MethodSpec], exported: dict[str, torch.export.ExportedProgram]) -> dict[str, dict]:
    """method -> {"inputs": [...], "outputs": [...]} tensor specs. Output shapes come from the exported
    graph's metadata, not from a call: one eager call of the 0.6B UNet and decoder took 84 s of its export."""
    io = {}
    for name, spec in methods.items():
        ep = exported[name]
        user = set(ep.graph_signature.user_outputs)
        outputs = [n.meta["val"] for n in ep.graph.output_node().args[0] if n.name in user]
        io[name] = {"inputs": [tensor_spec(n, t) for n, t in zip(spec.input_names, spec.example_inputs)],
                    "outputs": [tensor_spec(n, t) for n, t in zip(spec.output_names, outputs)]}
    return io


@contextlib.contextmanager
def preprocess_shares_weights():
    """XNNPACK's preprocess gets a copy of each partition's program that shares its weight tensors.

    ExecuTorch deep-copies every partition's program, weights included, so that a backend may change the
    graph (`BackendDetails.copy_exported_program_for_preprocess`); XNNPACK's preprocess changes the copy's
    graph and state dict but never a weight in place, and serializes the weights into a store of its own.
    The whole copy was 2.3 GB of the 0.6B UNet worker's 7.5 GB peak. Lowered programs are byte-identical
    either way (tests/test_lowering_memory.py)."""
    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    hook = "copy_exported_program_for_preprocess"
    if not hasattr(XnnpackBackend, hook):
        raise RuntimeError(f"ExecuTorch's BackendDetails has no {hook}: this version is not the pinned one")
    own = XnnpackBackend.__dict__.get(hook)  # None: inherited from BackendDetails

    def sharing_copy(cls, program, compile_specs):
        tensors = itertools.chain(program.state_dict.values(), program.constants.values())
        return copy.deepcopy(program, {id(t): t for t in tensors if isinstance(t, torch.Tensor)})

    setattr(XnnpackBackend, hook, classmethod(sharing_copy))
    try:
        yield
    finally:
        if own is None:
            delattr(XnnpackBackend, hook)
        else:
            setattr(XnnpackBackend, hook, own)


def lower_exported(exported: dict[str, torch.export.ExportedProgram], log: Callable[[str], None] = print):
    """XNNPACK-partitioned ExecuTorch program of the exported methods, and each method's delegation report."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    logging.getLogger("executorch").setLevel(logging.WARNING)
    # torch's pytree deprecation, raised from inside executorch once per node: it drowns progress bars.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated", category=FutureWarning)
    with preprocess_shares_weights():
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    delegation = {name: delegation_report(ep, edge.exported_program(name).graph_module) for name, ep in exported.items()}
    for name, rep in delegation.items():
        log(f"    {name}: {rep['op_fraction_delegated']:.1%} of ops, {rep['flop_fraction_delegated']:.2%} of FLOPs in XNNPACK"
            + (f"; outside: {rep['ops_outside_by_type']}" if rep["ops_outside_by_type"] else ""))
    return edge.to_executorch(), delegation


def write_program(program, path) -> None:
    """An ExecutorchProgramManager to `path` without a bytes copy of the whole program (2.3 GB at 0.6B)."""
    with open(path, "wb") as f:
        program.write_to_file(f)


def lower_program(methods: dict[str, MethodSpec], quantize: str = "none",
                  log: Callable[[str], None] = print) -> LoweredProgram:
    """The whole path in memory (small programs: tests, microbenchmarks); packages write to a file instead."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantization {quantize!r}; choose from {QUANTIZE_MODES}")
    if quantize == "int8":
        methods = {name: dataclasses.replace(spec, module=quantize_int8_module(spec.module, spec.calibration))
                   for name, spec in methods.items()}
    exported = export_methods(methods)
    io = method_io(methods, exported)
    program, delegation = lower_exported(exported, log)
    return LoweredProgram(data=program.buffer, methods=io, delegation=delegation)
