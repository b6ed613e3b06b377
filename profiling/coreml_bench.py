"""Core ML micro-models (one .mlpackage per table entry) and, on macOS, timing them.

Building works anywhere coremltools converts (Linux included): the models are converted exactly like
the package's (export.lowering.coreml.convert: ANE layout, fp16 ML Program). The folder they go to
holds index.json ({file: signature}), which the iOS demo app's benchmark screen reads; it writes the
results format of profiling.ingest. On a Mac, `time_coreml_programs` measures the same models with
coremltools' predict and writes that format too, so both go through one ingestion path.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from export.lowering.coreml import CoreMLOptions, convert, dir_bytes
from export.nas.model_blocks import ModelBlocks
from mobile_sdk.atomic import atomic_file
from mobile_sdk.errors import SDKError

from .microbench import output_names, program_filename
from .ingest import RESULTS_FORMAT, RESULTS_VERSION

INDEX = "index.json"


def build_coreml_programs(blocks: ModelBlocks, out_dir: str | Path, *, preset: str, signatures: list[str] | None = None,
                          progress: bool = True) -> Path:
    """One fp16 .mlpackage per entry plus index.json; finished models are reused on a rerun."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    opts = CoreMLOptions(deployment_target="iOS17")
    for sig in tqdm(signatures or blocks.signatures(), desc="converting Core ML micro-models", disable=not progress):
        name = program_filename(sig, ".mlpackage")
        target = out / name
        if not target.exists():
            module, inputs = blocks.blocks[sig].build()
            model = convert(module, inputs, [f"in{i}" for i in range(len(inputs))], output_names(module, inputs), opts, {"signature": sig})
            tmp = target.with_name(f".{target.stem}.tmp.mlpackage")  # coremltools wants the suffix
            shutil.rmtree(tmp, ignore_errors=True)
            model.save(str(tmp))
            os.replace(tmp, target)
        index[name] = {"signature": sig, "bytes": dir_bytes(target)}
    cfg = blocks.config
    meta = {"preset": preset, "quantize": "none",
            "resolution": {"height": cfg.height, "width": cfg.width, "num_frames": cfg.num_frames}, "models": index}
    with atomic_file(out / INDEX) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return out / INDEX


def time_coreml_programs(programs_dir: str | Path, out: str | Path, compute_units: str = "cpuAndNeuralEngine",
                         warmup: int = 5, runs: int = 20, progress: bool = True) -> Path:
    """macOS only: predict() timings of every micro-model, written in the app's results format."""
    if platform.system() != "Darwin":
        raise SDKError("profile coreml times Core ML models and runs on macOS only; on this host, build the "
                       "micro-models with `profile coreml-programs` and time them with the iOS demo app")
    import coremltools as ct
    import numpy as np

    programs_dir = Path(programs_dir)
    meta = json.loads((programs_dir / INDEX).read_text())
    results = []
    for name, info in tqdm(meta["models"].items(), desc=f"timing Core ML ({compute_units})", disable=not progress):
        model = ct.models.MLModel(str(programs_dir / name), compute_units=getattr(ct.ComputeUnit, _CT_UNITS[compute_units]))
        feed = {i.name: np.random.rand(*i.type.multiArrayType.shape).astype(np.float32) for i in model.get_spec().description.input}
        for _ in range(warmup):
            model.predict(feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model.predict(feed)
            times.append((time.perf_counter() - t0) * 1e3)
        results.append({"signature": info["signature"], "times_ms": times, "peak_memory_bytes": 0, "weight_bytes": info["bytes"]})
    doc = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "tool": f"mobile-sdk profile coreml (coremltools {ct.__version__})",
           "device": {"model": platform.node(), "soc": platform.processor() or platform.machine(), "os": f"macOS {platform.mac_ver()[0]}"},
           "runtime": {"name": "coreml", "version": f"macOS {platform.mac_ver()[0]}"}, "compute_units": compute_units,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "preset": meta["preset"], "quantize": meta["quantize"], "resolution": meta["resolution"], "warmup": warmup,
           "results": results}
    with atomic_file(out) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1) + "\n")
    return Path(out)


_CT_UNITS = {"all": "ALL", "cpuOnly": "CPU_ONLY", "cpuAndGPU": "CPU_AND_GPU", "cpuAndNeuralEngine": "CPU_AND_NE"}
