"""Lower components to Core ML ML Programs (.mlpackage), Neural-Engine layout, fp16.

One converter per component over a traced module in the ANE attention layout; optional weight
compression (palettization 4/6/8-bit or mixed bits, done in PyTorch by `palettization`; 8-bit linear); the entries of a component (the UNet's distinct plans
or sub-networks, extra sizes) become one multifunction package (shared weights de-duplicated); a component
over the chunk threshold is bisected into a chain of two models.
Core ML cannot run here, so what is checked is the spec: op types per function, IO names, dtypes.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from export.lowering.palettization import (
    BIT_CHOICES, WEIGHT_THRESHOLD, Observation, bit_choices, exact_table, is_mixed_mode, palettized,
    plan_palettization,
)
from mobile_sdk import __version__
from mobile_sdk.models.layers import attention_implementation
from mobile_sdk.package_summary import bit_shares
from mobile_sdk.quiet import native_stderr_quiet

COMPRESSION_MODES = ("none", "palettize4", "palettize6", "palettize8", "linear8")
DEPLOYMENT_TARGETS = ("iOS17", "iOS18")
CHUNK_THRESHOLD_BYTES = 1 << 30  # the iOS Neural Engine's practical per-model weight limit


@dataclass
class CoreMLOptions:
    # None: iOS17, or iOS18 when the package needs multifunction models (which Core ML has from iOS 18).
    deployment_target: str | None = None
    compression: str = "none"
    chunk_threshold_bytes: int = CHUNK_THRESHOLD_BYTES


def _ct():
    import coremltools as ct

    return ct


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def ane_unsupported_ops() -> list[dict]:
    return json.loads(resources.files("export.lowering").joinpath("ane_unsupported_ops.json").read_text())["entries"]


def convert(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
            opts: CoreMLOptions, metadata: dict):
    """Trace `module` (in eval mode) in the ANE layout and convert it to an fp16 ML Program; `module` is
    left in its own layout."""
    ct = _ct()
    inputs = [ct.TensorType(name=name, shape=tuple(x.shape), dtype=np.int32 if x.dtype == torch.int64 else np.float16)
              for name, x in zip(input_names, example_inputs)]
    with torch.no_grad(), native_stderr_quiet(), attention_implementation(module.eval(), "ane") as ane:
        # (native_stderr_quiet: the tracer's warnings and the converter's progress bars)
        traced = torch.jit.trace(ane, example_inputs, check_trace=False)
        model = ct.convert(
            traced,
            inputs=inputs,
            outputs=[ct.TensorType(name=n, dtype=np.float16) for n in output_names],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16,
            minimum_deployment_target=getattr(ct.target, opts.deployment_target),
        )
    model.author = "mobile-video-sdk"
    model.license = metadata.get("license", "see the SDK's license")
    model.short_description = metadata.get("description", "")
    model.version = __version__
    for k, v in metadata.items():
        model.user_defined_metadata[f"mobile_sdk.{k}"] = v if isinstance(v, str) else json.dumps(v)
    return model


def compress(model, mode: str, choices: tuple[int, ...] = BIT_CHOICES):
    """Weight compression of a converted model. Palettize modes expect the weights palettized in PyTorch
    before conversion (`palettization.palettized`) and store every constant of more than 2048 elements
    and at most 256 distinct values as its table, exactly; linear8 is coremltools' 8-bit linear
    quantization (weights of more than 2048 elements; small ones stay fp16)."""
    if mode == "none":
        return model
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig, OpPalettizerConfig, OptimizationConfig, linear_quantize_weights, palettize_weights,
    )

    if mode.startswith("palettize"):
        def table(values):
            return exact_table(values, choices)

        configs = {}
        for function in model._mil_program.functions.values():
            for op in function.find_ops(op_type="const"):
                value = op.outputs[0].val
                if (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > WEIGHT_THRESHOLD
                        and exact_table(value, choices) is not None):
                    configs[op.name] = OpPalettizerConfig(mode="custom", lut_function=table, weight_threshold=WEIGHT_THRESHOLD)
        with native_stderr_quiet():
            return palettize_weights(model, OptimizationConfig(op_name_configs=configs))
    if mode == "linear8":
        config = OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=WEIGHT_THRESHOLD)
        with native_stderr_quiet():
            return linear_quantize_weights(model, OptimizationConfig(global_config=config))
    raise ValueError(f"unknown Core ML compression {mode!r}; choose from {', '.join(COMPRESSION_MODES)} or palettize-mixed<bits>")


def _walk_ops(block, out: list) -> None:
    for op in block.operations:
        out.append(op)
        for inner in op.blocks:
            _walk_ops(inner, out)


def inspect_mlpackage(path: Path) -> dict:
    """What can be checked without a Core ML runtime: per function, op counts, IO and ANE flags."""
    ct = _ct()
    spec = ct.utils.load_spec(str(path))
    unsupported = ane_unsupported_ops()
    functions = {}
    for fname, fn in spec.mlProgram.functions.items():
        ops = []
        for blk in fn.block_specializations.values():
            _walk_ops(blk, ops)
        counts: dict[str, int] = {}
        for op in ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        flags = []
        for entry in unsupported:
            hits = [op for op in ops if op.type == entry["op"] and _condition_holds(op, entry.get("condition"))]
            if hits:
                flags.append({"op": entry["op"], "count": len(hits), "why": entry["why"], "source": entry["source"]})
        functions[fname] = {"op_counts": dict(sorted(counts.items())), "ane_flags": flags}
    desc = spec.description

    def io(features):
        out = []
        for f in features:
            arr = f.type.multiArrayType
            shapes = [list(s.shape) for s in arr.enumeratedShapes.shapes] or [list(arr.shape)]
            out.append({"name": f.name, "dtype": _DTYPE_NAMES.get(arr.dataType, str(arr.dataType)), "shape": list(arr.shape),
                        "enumerated_shapes": shapes if len(shapes) > 1 else []})
        return out

    return {"functions": functions, "inputs": io(desc.input), "outputs": io(desc.output),
            "metadata": dict(desc.metadata.userDefined), "specification_version": spec.specificationVersion}


_DTYPE_NAMES = {65552: "float16", 65568: "float32", 131104: "int32"}


def _condition_holds(op, condition: str | None) -> bool:
    if condition is None:
        return True
    if condition == "dilations > 1":
        dil = op.inputs.get("dilations")
        if dil is None or not dil.arguments:
            return False
        value = dil.arguments[0].value.immediateValue.tensor.ints.values if dil.arguments[0].HasField("value") else []
        return any(v > 1 for v in value)
    return False


@dataclass
class CoreMLComponent:
    file: str
    functions: dict
    inputs: list
    outputs: list
    bytes: int
    fp16_bytes: int
    compression: str
    single_function_bytes: int
    chain: list | None = None
    palettization: dict | None = None  # the bits per weight chosen (PalettizationPlan.summary)


def lower_coreml(root: Path, entries: dict, io_names: dict, opts: CoreMLOptions, metadata: dict,
                 observations: dict[str, Observation], log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Write coreml/<component>.mlpackage under `root`, one function per entry (the package writer's
    `Entry`: name, module, example inputs, size); returns the manifest's coreml target entry and
    {component: PalettizationPlan} of the palettized components (what --check runs in PyTorch).
    Palettization plans each component from its `observations` (of the export's eager calls; needed only
    when palettizing).

    Extra sizes are extra functions of the same multifunction package (`plan_0__8x64x64`), whose
    weights Core ML de-duplicates: coremltools 9.0's enumerated shapes leave the split-einsum
    attention with symbolic batch dims that its einsum lowering rejects.
    """
    from mobile_sdk.package import component_path

    multifunction = any(len(functions) > 1 for functions in entries.values())
    if opts.deployment_target is None:
        opts = replace(opts, deployment_target="iOS18" if multifunction or is_mixed_mode(opts.compression) else "iOS17")
    elif multifunction and opts.deployment_target < "iOS18":
        raise ValueError(f"step-aware plans and extra sizes make multifunction Core ML models, which need iOS 18; "
                         f"got --coreml-target {opts.deployment_target}")
    choices = bit_choices(opts.deployment_target)
    components, plans = {}, {}
    work = Path(tempfile.mkdtemp(prefix="coreml-", dir=root))
    try:
        for comp, functions in entries.items():
            rel = component_path("coreml", comp)
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            log(f"converting {comp} to Core ML ({opts.deployment_target}, fp16, ANE layout, "
                f"function(s) {', '.join(e.name for e in functions)}, compression {opts.compression})")
            if opts.compression.startswith("palettize"):
                plans[comp] = plan_palettization([e.module for e in functions], observations[comp], opts.compression,
                                                 choices)
                log(f"  palettization: {_describe(plans[comp])}")
            fp16_parts, parts = [], []
            # palettized weights convert to the same fp16 model size; the tables are stored after it
            with palettized(plans[comp]) if comp in plans else contextlib.nullcontext():
                for e in functions:
                    name = e.name
                    model = convert(e.module, e.example, *io_names[comp], opts, {**metadata, "component": comp, "function": name})
                    fp16_parts.append((name, work / f"{comp}-{name}-fp16.mlpackage"))
                    model.save(str(fp16_parts[-1][1]))
                    if opts.compression == "none":
                        parts.append(fp16_parts[-1])
                    else:
                        parts.append((name, work / f"{comp}-{name}.mlpackage"))
                        compress(model, opts.compression, choices).save(str(parts[-1][1]))
                    del model
            single_function_bytes = dir_bytes(parts[0][1])
            fp16_bytes = dir_bytes(_assemble(fp16_parts, work / f"{comp}-fp16.mlpackage")) if opts.compression != "none" else None
            _assemble(parts, target)
            size = dir_bytes(target)
            chain = None
            if size > opts.chunk_threshold_bytes:
                if len(parts) > 1:
                    raise ValueError(f"{comp}: {size / 1e9:.2f} GB needs chunking, which multifunction packages do not support yet")
                chain = _bisect(target, root, comp, log)
            info = inspect_mlpackage(target) if chain is None else {"functions": {}, "inputs": [], "outputs": []}
            sizes_of = {e.name: (list(e.size) if e.size else None) for e in functions}
            for name, fn in info["functions"].items():
                fn["size"] = sizes_of.get(name)
            components[comp] = CoreMLComponent(
                file=rel if chain is None else None, functions=info["functions"], inputs=info["inputs"],
                outputs=info["outputs"], bytes=size, fp16_bytes=fp16_bytes or size, compression=opts.compression,
                single_function_bytes=single_function_bytes, chain=chain,
                palettization=plans[comp].summary() if comp in plans else None).__dict__
            flags = sorted({fl["op"] for fn in info["functions"].values() for fl in fn["ane_flags"]})
            log(f"  wrote {rel} ({size / 1e6:.2f} MB, {opts.compression}"
                + (f"; fp16 {fp16_bytes / 1e6:.2f} MB" if fp16_bytes else "")
                + (f"; {len(parts)} functions, one alone {single_function_bytes / 1e6:.2f} MB" if len(parts) > 1 else "")
                + (f"; may leave the ANE: {', '.join(flags)}" if flags else "") + ")")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"runtime": "Core ML", "deployment_target": opts.deployment_target, "compute_precision": "float16",
            "attention_implementation": "ane (channels-first [B, C, 1, S], 1x1 convs, split-einsum attention)",
            "components": components}, plans


def _describe(plan) -> str:
    return f"{plan.average_bits:.2f} bits per weight on average over {len(plan.bits)} weights ({bit_shares(plan.summary()['elements_by_bits'])})"


def _assemble(parts: list[tuple[str, Path]], target: Path) -> Path:
    """One function: move it to `target`; several: a multifunction package (shared weights de-duplicated)."""
    if len(parts) == 1:
        shutil.move(str(parts[0][1]), target)
        return target
    ct = _ct()
    desc = ct.utils.MultiFunctionDescriptor()
    for name, path in parts:
        desc.add_function(str(path), src_function_name="main", target_function_name=name)
    desc.default_function_name = parts[0][0]
    ct.utils.save_multifunction(desc, str(target))
    return target


def _bisect(target: Path, root: Path, comp: str, log) -> list[dict]:
    """Split an oversized model into two chunks that run in sequence; the original is removed."""
    ct = _ct()
    out_dir = target.parent
    ct.models.utils.bisect_model(str(target), str(out_dir), check_output_correctness=False)
    shutil.rmtree(target)
    chain = []
    for i in (1, 2):
        chunk = out_dir / f"{comp}_chunk{i}.mlpackage"
        info = inspect_mlpackage(chunk)
        chain.append({"file": chunk.relative_to(root).as_posix(), "inputs": info["inputs"], "outputs": info["outputs"],
                      "bytes": dir_bytes(chunk)})
    log(f"  {comp} exceeds the chunk threshold: split into {len(chain)} chained models")
    return chain
