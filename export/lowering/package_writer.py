"""Write `NAME.mobilepkg/`: lowered components, tokenizer, test vectors and manifest.json (the contract
in mobile_sdk.package), atomically: everything is built in a temporary folder beside the target, the
parity gate runs there, and only a complete package is renamed into place.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mobile_sdk import __version__
from mobile_sdk.atomic import atomic_dir, atomic_file
from mobile_sdk.errors import SDKError
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.contract import names as contract_names
from mobile_sdk.noise import noise_spec, portable_normal
from mobile_sdk.package import (
    IO_NAMES, MANIFEST, SCHEMA, SCHEMA_VERSION, TEST_VECTOR_DIR, TOKENIZER, component_path, entry_names, list_files,
    sha256_file,
)
from mobile_sdk.pipeline import VideoPipeline

from export.lowering.calibration import capture_calibration, default_prompts
from export.lowering.executorch import MethodSpec, export_methods, lower_exported, method_io, write_program
from export.lowering.parity import (
    FP32_COMPONENT_MIN_DB, INT8_COMPONENT_MIN_DB, INT8_FRAMES_MIN_DB, component_inputs, psnr,
)

TEST_PROMPT = "a red circle moving right"
TEST_SEED = 7  # the noise and pipeline test vectors' seed
(MAIN,) = entry_names(1)
LOW_MEMORY_ABOVE_BYTES = 1 << 30  # fp32 UNet weights above which export lowers one component per process


SCRATCH = ".scratch"  # inside the package's temporary folder: .pt2 programs waiting for a worker


class ParityError(SDKError):
    """The exported programs do not reproduce eager PyTorch closely enough."""


def unet_fp32_bytes(pipe: VideoPipeline) -> int:
    return 4 * sum(p.numel() for p in pipe.unet.parameters())


def release_weights(pipe: VideoPipeline) -> None:
    """Free the pipeline's weights (its modules move to the meta device): `pipe` cannot run afterwards."""
    for module in (pipe.text_encoder, pipe.unet, pipe.vae_decoder):
        module.to("meta")
    gc.collect()


def _log_written(root: Path, rel: str, log: Callable[[str], None]) -> None:
    log(f"  wrote {rel} ({(root / rel).stat().st_size / 1e6:.2f} MB)")


def _save_exported(root: Path, comp: str, exported: dict) -> dict[str, str]:
    """Each method's ExportedProgram as a .pt2 in the scratch folder, for a worker to lower."""
    (root / SCRATCH).mkdir(exist_ok=True)
    paths = {}
    for name, ep in exported.items():
        paths[name] = str(root / SCRATCH / f"{comp}.{name}.pt2")
        torch.export.save(ep, paths[name])
    return paths


def _lower_in_worker(root: Path, comp: str, programs: dict[str, str], quantize: str,
                     log: Callable[[str], None]) -> dict:
    """Run export.lowering.component_worker on one component; its progress lines become ours."""
    from mobile_sdk import quiet

    log(f"lowering {comp} ({', '.join(programs)}) to ExecuTorch/XNNPACK in a worker process, quantization {quantize}")
    job = {"programs": programs, "out": str(root / component_path("executorch", comp)),
           "report": str(root / SCRATCH / f"{comp}.delegation.json"), "quantize": quantize,
           "quiet": quiet._quiet_native}
    job_path = root / SCRATCH / f"{comp}.job.json"
    job_path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "export.lowering.component_worker", str(job_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        log(line.rstrip("\n"))
    err = proc.stderr.read().strip()
    if proc.wait() != 0:
        last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
        raise SDKError(f"lowering {comp} failed in its worker process: {last}")
    return json.loads(Path(job["report"]).read_text())


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "executorch", "coremltools", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _unet_views(pipe: VideoPipeline) -> tuple[list, list[str], list[dict]]:
    """(distinct plan views as the velocity models the steps call, method name of each step, plan of each method)."""
    steps = pipe.config.scheduler.num_inference_steps
    velocity = pipe.scheduler.velocity_model  # the UNet itself, or a DDIM UNet converted to the step's velocity
    if isinstance(pipe.unet, StepAwareUNet):
        names = entry_names(len(pipe.unet.distinct))
        return ([velocity(v) for v in pipe.unet.views], [names[i] for i in pipe.unet.step_to_plan],
                [p.to_dict() for p in pipe.unet.distinct])
    return [velocity(pipe.unet)], [MAIN] * steps, [pipe.unet.plan.to_dict()]


def _example_inputs(pipe: VideoPipeline) -> dict[str, tuple[torch.Tensor, ...]]:
    cfg = pipe.config
    f = cfg.vae.downsample_factor
    g = torch.Generator().manual_seed(1)
    h, w = cfg.height // f, cfg.width // f
    ids = pipe.tokenizer(TEST_PROMPT)
    with torch.no_grad():
        hidden, _ = pipe.text_encoder(ids)
    return {
        "text_encoder": (ids,),
        "unet": (torch.randn(1, cfg.vae.latent_channels, cfg.num_frames, h, w, generator=g),
                 torch.tensor([pipe.scheduler.timesteps[0]]), hidden),
        "vae_decoder": (torch.randn(1, cfg.vae.latent_channels, h, w, generator=g),),
    }


def _write_tensor(root: Path, name: str, t) -> dict:
    arr = np.ascontiguousarray(t.numpy() if torch.is_tensor(t) else t)
    rel = f"{TEST_VECTOR_DIR}/{name}.bin"
    (root / TEST_VECTOR_DIR).mkdir(exist_ok=True)
    arr.astype(arr.dtype.newbyteorder("<")).tofile(root / rel)
    return {"file": rel, "shape": list(arr.shape), "dtype": str(arr.dtype)}


def parse_quantize(spec: str) -> tuple[str, str]:
    """'int8', 'palettize6', 'int8,palettize4', 'none' -> (ExecuTorch mode, Core ML compression)."""
    from export.lowering.coreml import COMPRESSION_MODES

    et, coreml = "none", "none"
    for mode in filter(None, (m.strip() for m in spec.split(","))):
        if mode == "none":
            continue
        if mode == "int8":
            et = mode
        elif mode in COMPRESSION_MODES:
            coreml = mode
        else:
            raise SDKError(f"unknown quantization {mode!r}: ExecuTorch takes int8, Core ML takes "
                           f"{', '.join(COMPRESSION_MODES[1:])}; combine them with a comma")
    return et, coreml


def export_package(
    pipe: VideoPipeline,
    out: str | Path,
    targets: tuple[str, ...] = ("executorch",),
    quantize: str = "none",
    check: bool = False,
    make_zip: bool = False,
    preset: str | None = None,
    latency_table: dict | None = None,
    calibration_prompts: int = 8,
    coreml_options=None,
    overwrite: bool = False,
    low_memory: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Lower `pipe` and write the package; returns the manifest. Raises ParityError if --check fails.

    `quantize` is 'none', 'int8' (ExecuTorch PT2E), a Core ML weight compression (palettize4/6/8,
    linear8), or one of each separated by a comma. An existing package at `out` is replaced only with
    `overwrite`; anything else there is never touched.

    `low_memory` (default: when the UNet's fp32 weights pass 1 GiB) lowers each ExecuTorch component in a
    process of its own after releasing `pipe`'s weights (the pipeline is unusable afterwards): peak memory
    is then about one component's lowering, not the whole model's plus it.
    """
    from export.lowering.coreml import CoreMLOptions, lower_coreml

    out = Path(out)
    if out.exists() or out.is_symlink():
        if not (out.is_dir() and not out.is_symlink() and (out / MANIFEST).is_file()):
            raise SDKError(f"{out}: exists and is not a package; refusing to replace it")
        if not overwrite:
            raise SDKError(f"{out}: a package is already there; pass --overwrite to replace it")
    unknown = set(targets) - {"executorch", "coreml"}
    if unknown or not targets:
        raise SDKError(f"unknown target(s) {sorted(unknown)}; choose executorch and/or coreml")
    quantize, coreml_compression = parse_quantize(quantize)
    coreml_options = dataclasses.replace(coreml_options or CoreMLOptions(), compression=coreml_compression)
    cfg = pipe.config
    pipe.scheduler.set_timesteps(cfg.scheduler.num_inference_steps)
    views, step_methods, plans = _unet_views(pipe)
    names = entry_names(len(views))
    examples = _example_inputs(pipe)

    calibration: dict[str, list] = {}
    if quantize == "int8":
        prompts = default_prompts(calibration_prompts)
        log(f"capturing int8 calibration inputs from {len(prompts)} pipeline runs ({len(step_methods)} steps each)")
        calibration = capture_calibration(pipe, step_methods, prompts)

    # text encoder stays fp32 under int8: it is <1 % of the compute and prompt embeddings are sensitive.
    component_quant = {"text_encoder": "none", "unet": quantize, "vae_decoder": quantize}
    program_specs = {
        "text_encoder": {MAIN: MethodSpec(pipe.text_encoder, examples["text_encoder"], *IO_NAMES["text_encoder"])},
        "unet": {n: MethodSpec(v, examples["unet"], *IO_NAMES["unet"], calibration.get(f"unet/{n}", []))
                 for n, v in zip(names, views)},
        "vae_decoder": {MAIN: MethodSpec(pipe.vae_decoder, examples["vae_decoder"], *IO_NAMES["vae_decoder"],
                                              calibration.get("vae_decoder", []))},
    }
    if low_memory is None:
        low_memory = unet_fp32_bytes(pipe) > LOW_MEMORY_ABOVE_BYTES
    if low_memory and "executorch" in targets:
        log("low-memory export: each component is lowered in a process of its own, after the weights here are released")

    with atomic_dir(out) as tmp:
        components, deferred = {}, {}
        for comp, methods in (program_specs.items() if "executorch" in targets else ()):
            rel = component_path("executorch", comp)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            components[comp] = {"file": rel, "methods": method_io(methods), "quantization": component_quant[comp]}
            if low_memory:
                log(f"exporting {comp} ({', '.join(methods)}) with torch.export, quantization {component_quant[comp]}")
                deferred[comp] = _save_exported(tmp, comp, export_methods(methods, component_quant[comp]))
            else:
                log(f"lowering {comp} ({', '.join(methods)}) to ExecuTorch/XNNPACK, quantization {component_quant[comp]}")
                program, components[comp]["delegation"] = lower_exported(export_methods(methods, component_quant[comp]), log)
                write_program(program, tmp / rel)
                del program
                _log_written(tmp, rel, log)

        coreml = None
        if "coreml" in targets:
            meta = {"preset": preset or "", "model": cfg.name, "description": cfg.description,
                    "temporal_plans": {n: p for n, p in zip(names, plans)}, "sdk_version": __version__}
            coreml = lower_coreml(pipe, tmp, examples, IO_NAMES, views, names, coreml_options, meta, log)

        tokenizer = {"format": "mobile-sdk-tokenizer", "version": 1, **pipe.tokenizer.to_dict()}
        (tmp / TOKENIZER).write_text(json.dumps(tokenizer, indent=2) + "\n")
        test_vectors, eager_run = _write_test_vectors(tmp, pipe, examples, names, views, step_methods, quantize, check)
        manifest = _manifest(pipe, preset, components, step_methods, plans, names, quantize, test_vectors, latency_table)
        references = parity_references(pipe, components, eager_run) if check and "executorch" in targets else None
        if deferred:
            del program_specs, views, examples, calibration
            release_weights(pipe)
            for comp, programs in deferred.items():
                components[comp]["delegation"] = _lower_in_worker(tmp, comp, programs, component_quant[comp], log)
                _log_written(tmp, components[comp]["file"], log)
            shutil.rmtree(tmp / SCRATCH)
        for comp in components.values():
            comp["bytes"] = (tmp / comp["file"]).stat().st_size
        if "executorch" not in targets:
            del manifest["targets"]["executorch"]
        if coreml is not None:
            manifest["targets"]["coreml"] = coreml
            manifest["quantization"]["coreml"] = coreml_compression
        manifest["files"] = {rel: {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                             for rel in list_files(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if check and "executorch" not in targets:
            log("  --check: Core ML cannot run on this host; parity of the coreml target is a macOS test")
        elif check:  # runs the package as written (its manifest included); only the results are added
            manifest["targets"]["executorch"]["parity"] = check_parity(tmp, references, quantize, log)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"package written to {out}")
    if make_zip:
        zip_path = out.with_name(out.name + ".zip")
        with atomic_file(zip_path) as ztmp:
            with zipfile.ZipFile(ztmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(out.rglob("*")):
                    if p.is_file():
                        zf.write(p, (Path(out.name) / p.relative_to(out)).as_posix())
        log(f"zip written to {zip_path}")
    return manifest


def _manifest(pipe, preset, components, step_methods, plans, names, quantize, test_vectors, latency_table) -> dict:
    cfg = pipe.config
    f = cfg.vae.downsample_factor
    sched = pipe.scheduler
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sdk_version": __version__,
        "tools": tool_versions(),
        "model": {"name": cfg.name, "preset": preset, "description": cfg.description, "trained": pipe.trained,
                  "config": dataclasses.asdict(cfg)},
        "video": {"height": cfg.height, "width": cfg.width, "num_frames": cfg.num_frames, "fps": cfg.fps},
        "latent": {"channels": cfg.vae.latent_channels, "height": cfg.height // f, "width": cfg.width // f,
                   "layout": "[batch, channels, frames, height, width]"},
        "noise": noise_spec(),
        "tokenizer": {"file": TOKENIZER},
        "scheduler": {**sched.to_dict(), "update": "latents = latents + dt * velocity",
                      "guidance_scale": cfg.guidance_scale,
                      "guidance": "velocity = v_uncond + scale * (v_cond - v_uncond), uncond = the empty prompt"
                      if cfg.guidance_scale != 1.0 else "none"},
        "steps": [{"index": i, "timestep": t, "dt": d, "unet_method": step_methods[i]}
                  for i, (t, d) in enumerate(zip(sched.timesteps, sched.step_sizes))],
        "temporal_plans": {n: p for n, p in zip(names, plans)},
        "decoder": {"output": "rgb in [0, 1], [frames, 3, height, width]; multiply by 255 and round",
                    "frames_per_call": 1},
        "quantization": {"executorch": {c: v["quantization"] for c, v in components.items()},
                         "method": "PT2E static int8 of convolutions and linears (XNNPACK quantizer, per-channel "
                                   "weights, per-tensor activations; norms, attention and activations stay fp32), "
                                   "calibrated on inputs captured from pipeline runs" if quantize == "int8" else "none"},
        "latency_table": latency_table,
        "targets": {"executorch": {"runtime": "ExecuTorch", "delegate": "XNNPACK", "components": components}},
        "test_vectors": test_vectors,
        "files": {},
    }


@torch.no_grad()
def _write_test_vectors(root, pipe, examples, names, views, step_methods, quantize, check: bool):
    """Small recorded inputs and eager outputs that the apps' own tests replay (min PSNR given)."""
    component_db = FP32_COMPONENT_MIN_DB if quantize == "none" else INT8_COMPONENT_MIN_DB
    vectors = {}
    ids = examples["text_encoder"][0]
    hidden, pooled = pipe.text_encoder(ids)
    vectors["text_encoder"] = {"component": "text_encoder", "method": MAIN, "prompt": TEST_PROMPT,
                               "inputs": {"input_ids": _write_tensor(root, "text_encoder.input_ids", ids)},
                               "outputs": {"last_hidden_state": _write_tensor(root, "text_encoder.last_hidden_state", hidden),
                                           "pooled": _write_tensor(root, "text_encoder.pooled", pooled)},
                               "min_psnr_db": FP32_COMPONENT_MIN_DB}
    sample, t, _ = examples["unet"]
    for name, view in zip(names, views):
        v = view(sample, t, hidden)
        vectors[f"unet.{name}"] = {"component": "unet", "method": name,
                                   "inputs": {"sample": _write_tensor(root, f"unet.{name}.sample", sample),
                                              "timestep": _write_tensor(root, f"unet.{name}.timestep", t),
                                              "encoder_hidden_states": _write_tensor(root, f"unet.{name}.hidden", hidden)},
                                   "outputs": {"velocity": _write_tensor(root, f"unet.{name}.velocity", v)},
                                   "min_psnr_db": component_db}
    (z,) = examples["vae_decoder"]
    vectors["vae_decoder"] = {"component": "vae_decoder", "method": MAIN,
                              "inputs": {"latents": _write_tensor(root, "vae_decoder.latents", z)},
                              "outputs": {"rgb": _write_tensor(root, "vae_decoder.rgb", pipe.vae_decoder(z))},
                              "min_psnr_db": component_db}
    noise = torch.from_numpy(portable_normal(TEST_SEED, pipe.latent_shape()))
    noise_name, pipeline_name = contract_names()["noise"]["test_vector"], contract_names()["test_vectors"]["pipeline"]
    vectors[noise_name] = {"component": noise_name, "seed": TEST_SEED, "inputs": {},
                           "outputs": {"noise": _write_tensor(root, noise_name, noise)}, "exact": True}
    pipe.set_progress_bar_config(disable=True)
    # Frames go into the vector up to 1 MB; larger ones are decoded only for --check (the 0.6B model's
    # sixteen 512x320 frames take minutes in eager PyTorch).
    cfg = pipe.config
    small = cfg.num_frames * cfg.height * cfg.width * 3 <= 1 << 20
    out = pipe(TEST_PROMPT, latents=noise.clone(), output_type="np" if small or check else "latent")
    e2e = {"component": pipeline_name, "prompt": TEST_PROMPT, "seed": TEST_SEED,
           "inputs": {"initial_latents": _write_tensor(root, "pipeline.initial_latents", noise)},
           "outputs": {"final_latents": _write_tensor(root, "pipeline.final_latents", out.latents)},
           "min_psnr_db": 40.0 if quantize == "none" else INT8_FRAMES_MIN_DB}
    if small:
        e2e["outputs"]["frames"] = _write_tensor(root, "pipeline.frames", out.frames[0])
    vectors[pipeline_name] = e2e
    return vectors, (noise, out)


@torch.no_grad()
def parity_references(pipe: VideoPipeline, components: dict, eager_run) -> dict:
    """What --check compares the written programs against, taken while `pipe` still has its weights:
    each method's eager output on fresh random inputs of its exact shape (every layer runs once), and the
    eager 4-step run of the pipeline test vector (`eager_run`; not repeated here)."""
    vocab = pipe.config.text_encoder.vocab_size
    views = dict(zip(components["unet"]["methods"], _unet_views(pipe)[0]))
    eager = {"text_encoder": {MAIN: lambda ids: pipe.text_encoder(ids)[0]}, "unet": views,
             "vae_decoder": {MAIN: pipe.vae_decoder}}
    refs: dict = {"components": {}, "pipeline": eager_run}
    for seed, (comp, methods) in enumerate(eager.items(), start=11):
        for name, fn in methods.items():
            args = component_inputs(comp, components[comp]["methods"][name]["inputs"], vocab, seed=seed)
            key = comp if comp != "unet" else f"unet.{name}"
            refs["components"][key] = (comp, name, args, fn(*args))
    return refs


def check_parity(root: Path, refs: dict, quantize: str, log: Callable[[str], None]) -> dict:
    """PSNR of each written program against eager, then of the whole 4-step pipeline (the test vector's
    noise); raises ParityError below the thresholds."""
    from mobile_sdk.package import open_package
    from mobile_sdk.runtime import pipeline_from_package

    pkg = open_package(root, verify=False)
    pte = pipeline_from_package(pkg)
    programs = {"text_encoder": {MAIN: lambda ids: pte.text_encoder(ids)[0]}, "unet": pte.unet.views,
                "vae_decoder": {MAIN: pte.vae_decoder}}
    results: dict = {"components": {}, "thresholds_db": {}}
    with torch.no_grad():
        for key, (comp, name, args, expected) in refs["components"].items():
            results["components"][key] = psnr(expected, programs[comp][name](*args))
        noise, eager_out = refs["pipeline"]
        pte.set_progress_bar_config(disable=True)
        pte_out = pte(TEST_PROMPT, latents=noise.clone())
    results["pipeline_frames_db"] = psnr(eager_out.frames, pte_out.frames, peak=255.0)
    results["pipeline_latents_db"] = psnr(eager_out.latents, pte_out.latents)
    pkg.close()
    for k, v in results["components"].items():
        log(f"  parity {k}: {v:.1f} dB")
    log(f"  parity 4-step pipeline: frames {results['pipeline_frames_db']:.1f} dB, latents {results['pipeline_latents_db']:.1f} dB")
    if quantize == "none":
        results["thresholds_db"] = {"component_min": FP32_COMPONENT_MIN_DB}
        bad = {k: v for k, v in results["components"].items() if v < FP32_COMPONENT_MIN_DB}
        if bad:
            raise ParityError(f"parity gate failed: {', '.join(f'{k} {v:.1f} dB' for k, v in bad.items())} "
                              f"(fp32 needs >= {FP32_COMPONENT_MIN_DB} dB per component); no package was written")
    else:
        results["thresholds_db"] = {"pipeline_frames_min": INT8_FRAMES_MIN_DB, "component_min": INT8_COMPONENT_MIN_DB}
        bad = {k: v for k, v in results["components"].items() if v < INT8_COMPONENT_MIN_DB}
        if results["pipeline_frames_db"] < INT8_FRAMES_MIN_DB or bad:
            raise ParityError(f"parity gate failed: int8 frames {results['pipeline_frames_db']:.1f} dB "
                              f"(needs >= {INT8_FRAMES_MIN_DB} dB)"
                              + "".join(f", {k} {v:.1f} dB" for k, v in bad.items())
                              + f" (components need >= {INT8_COMPONENT_MIN_DB} dB); no package was written")
    results["passed"] = True
    return results
