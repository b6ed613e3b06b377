"""Write `NAME.mobilepkg/`: lowered components, tokenizer, test vectors and manifest.json (the contract
in mobile_sdk.package), atomically: everything is built in a temporary folder beside the target, the
parity gate runs there, and only a complete package is renamed into place.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import gc
import json
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mobile_sdk import __version__
from mobile_sdk.atomic import atomic_dir, atomic_file
from mobile_sdk.config import UNetConfig
from mobile_sdk.errors import SDKError
from mobile_sdk.models import VideoUNet
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.contract import names as contract_names
from mobile_sdk.noise import noise_spec, portable_normal
from mobile_sdk.package import (
    COMPONENTS, IO_NAMES, MANIFEST, SCHEMA, SCHEMA_VERSION, TEST_VECTOR_DIR, TOKENIZER, component_path, entry_names,
    format_size, list_files, sha256_file, sized_entry_name,
)
from mobile_sdk.pipeline import VideoPipeline

from export.lowering.calibration import default_prompts, observe_pipeline_runs
from export.lowering.executorch import (
    MethodSpec, convert_int8, export_methods, lower_exported, method_io, prepare_int8, write_program,
)
from export.lowering.worker_lowering import (
    SCRATCH, WorkerLowering, leave_a_core, overlap_reason, save_exported,
)
from export.lowering.parity import (
    FP32_COMPONENT_MIN_DB, INT8_COMPONENT_MIN_DB, INT8_FRAMES_MIN_DB, PALETTIZED_FRAMES_MIN_DB, psnr,
)
from export.lowering.palettization import observing, palettized
from export.nas.elastic import subnet_of
from export.nas.sampling_space import module_flops

TEST_PROMPT = "a red circle moving right"
TEST_SEED = 7  # the noise and pipeline test vectors' seed
VECTOR_FRAMES_MAX_BYTES = 1 << 20  # the pipeline's test vector holds its frames up to this size
CHECKED_FRAMES = 4  # frames --check decodes of a larger video (an eager 512x320 0.6B frame takes ~11 s)
(MAIN,) = entry_names(1)
LOW_MEMORY_ABOVE_BYTES = 1 << 30  # fp32 UNet weights above which export lowers one component per process


class ParityError(SDKError):
    """The exported programs do not reproduce eager PyTorch closely enough."""


@dataclass
class PipelineReference:
    """The eager 4-step run --check compares with: its noise, final latents, and the frames decoded from
    them (`frame_index` of the video's frames)."""
    noise: torch.Tensor
    latents: torch.Tensor
    frame_index: list[int]
    frames: np.ndarray | None


def vector_holds_frames(cfg) -> bool:
    return cfg.num_frames * cfg.height * cfg.width * 3 <= VECTOR_FRAMES_MAX_BYTES


def checked_frames(cfg) -> list[int]:
    """The frames --check decodes: all of a video whose frames fit the test vector, else CHECKED_FRAMES
    spread from the first to the last. The decoder runs frame by frame, so every decoded frame exercises
    all its layers; the latents, where the UNet's temporal layers show, are compared whole."""
    if vector_holds_frames(cfg) or cfg.num_frames <= CHECKED_FRAMES:
        return list(range(cfg.num_frames))
    return [round(i * (cfg.num_frames - 1) / (CHECKED_FRAMES - 1)) for i in range(CHECKED_FRAMES)]


def compare_pipeline(pipe: VideoPipeline, ref: PipelineReference) -> dict:
    """`pipe`'s 4-step run from the reference's noise against the reference: the latents whole, the frames
    on the reference's decoded ones."""
    out = pipe(TEST_PROMPT, latents=ref.noise.clone(), output_type="latent")
    frames = pipe.decode(out.latents[:, :, ref.frame_index])
    return {"pipeline_frames_db": psnr(ref.frames, frames, peak=255.0),
            "pipeline_latents_db": psnr(ref.latents, out.latents), "checked_frames": ref.frame_index}


def _pipeline_line(prefix: str, results: dict, num_frames: int) -> str:
    decoded = len(results["checked_frames"])
    return (f"  {prefix} 4-step pipeline: frames {results['pipeline_frames_db']:.1f} dB"
            + (f" ({decoded} of {num_frames} frames decoded)" if decoded < num_frames else "")
            + f", latents {results['pipeline_latents_db']:.1f} dB")


@contextlib.contextmanager
def _observing_components(entries: dict[str, list["Entry"]], enabled: bool):
    """{component: Observation} of the block's calls of each component's entries ({} when not `enabled`):
    the palettization plans come from the test vectors' own calls."""
    with contextlib.ExitStack() as stack:
        yield {comp: stack.enter_context(observing([e.module for e in comp_entries]))
               for comp, comp_entries in entries.items()} if enabled else {}


def unet_fp32_bytes(pipe: VideoPipeline) -> int:
    return 4 * sum(p.numel() for p in pipe.unet.parameters())


def release_weights(pipe: VideoPipeline) -> None:
    """Free the pipeline's weights (its modules move to the meta device): `pipe` cannot run afterwards."""
    for module in (pipe.text_encoder, pipe.unet, pipe.vae_decoder):
        module.to("meta")
    gc.collect()


def return_freed_memory() -> None:
    """Hand the heap that freed tensors leave behind back to the OS (glibc keeps it for reuse): after the
    eager 0.6B test vectors it stood under the Core ML conversion's peak. Nothing where glibc is absent."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _log_written(root: Path, rel: str, log: Callable[[str], None]) -> None:
    log(f"  wrote {rel} ({(root / rel).stat().st_size / 1e6:.2f} MB)")


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "executorch", "coremltools", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class Entry:
    """One method (ExecuTorch) / function (Core ML) of a component: its name, what it runs, example inputs of
    its exact shapes and the (frames, height, width) it serves (None: the text encoder serves every size). A
    UNet entry also names its view (whose config holds its plan and sub-network) and its temporal plan's entry."""
    name: str
    module: Callable
    example: tuple[torch.Tensor, ...]
    size: tuple[int, int, int] | None = None
    view: VideoUNet | None = None
    plan: str | None = None


def package_sizes(cfg, extra: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(frames, height, width) of every size: the model's own first, then each extra one the model can take."""
    for size in extra:
        cfg.check_size(size[1], size[2], size[0], where=f"--size {format_size(size)}")
    return list(dict.fromkeys([(cfg.num_frames, cfg.height, cfg.width), *extra]))


def _at(name: str, size: tuple[int, int, int], default: tuple[int, int, int]) -> str:
    """The entry name of `name` at `size`: the name itself at the default size, else with the size suffix."""
    return name if size == default else sized_entry_name(name, size)


def _decoder_at(size: tuple[int, int, int], default: tuple[int, int, int]) -> str:
    """The decoder decodes one frame per call: its entry depends only on the height and width."""
    return _at(MAIN, (1, *size[1:]), (1, *default[1:]))


def _unet_views(pipe: VideoPipeline) -> tuple[list[VideoUNet], list[int]]:
    """(the distinct UNets the steps run, which one each step runs)."""
    if isinstance(pipe.unet, StepAwareUNet):
        return list(pipe.unet.views), pipe.unet.step_to_view
    return [pipe.unet], [0] * pipe.config.scheduler.num_inference_steps


def _entries(pipe: VideoPipeline, sizes: list[tuple[int, int, int]]) -> dict[str, list[Entry]]:
    """Every component's entries: the UNet's per size and distinct view, the decoder's per height and width."""
    cfg = pipe.config
    f, c = cfg.vae.downsample_factor, cfg.vae.latent_channels
    g = torch.Generator().manual_seed(1)
    ids = pipe.tokenizer(TEST_PROMPT)
    with torch.no_grad():
        hidden, _ = pipe.text_encoder(ids)
    t0 = torch.tensor([pipe.scheduler.timesteps[0]])
    velocity = pipe.scheduler.velocity_model  # the UNet itself, or a DDIM UNet converted to the step's velocity
    views, _ = _unet_views(pipe)
    names = entry_names(len(views))
    unet = [Entry(_at(name, size, sizes[0]), velocity(view),
                  (torch.randn(1, c, size[0], size[1] // f, size[2] // f, generator=g), t0, hidden), size, view, name)
            for size in sizes for name, view in zip(names, views)]
    decoder = {_decoder_at(size, sizes[0]): size for size in sizes}
    return {"text_encoder": [Entry(MAIN, pipe.text_encoder, (ids,))], "unet": unet,
            "vae_decoder": [Entry(name, pipe.vae_decoder, (torch.randn(1, c, h // f, w // f, generator=g),), (1, h, w))
                            for name, (_, h, w) in decoder.items()]}


def _step_methods(pipe: VideoPipeline, size: tuple[int, int, int], default: tuple[int, int, int]) -> list[str]:
    views, step_to_view = _unet_views(pipe)
    names = entry_names(len(views))
    return [_at(names[i], size, default) for i in step_to_view]


def unet_flops(config: UNetConfig, example: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one call of a UNet of `config` on inputs shaped like `example` (meta device: no weights)."""
    sample, _, hidden = example
    return int(module_flops(json.dumps(dataclasses.asdict(config), sort_keys=True), tuple(sample.shape),
                            tuple(hidden.shape))["Global"])


def _unet_methods(cfg, entries: list[Entry]) -> dict[str, dict]:
    """The manifest's unet_methods: per UNet entry its temporal plan, sub-network and FLOPs per call."""
    return {e.name: {"temporal_plan": e.plan,
                     "subnet": subnet_of(cfg.unet, e.view.config, f"UNet method {e.name}").to_dict(),
                     "flops_per_call": unet_flops(e.view.config, e.example)} for e in entries}


def vector_name(component: str, entry: str) -> str:
    """The test vector (and parity result) of an entry: the component's name for its main entry, else
    component.entry (the UNet's always: its entries were named per plan from the start)."""
    return component if entry == MAIN and component != "unet" else f"{component}.{entry}"


def _write_tensor(root: Path, name: str, t) -> dict:
    arr = np.ascontiguousarray(t.numpy() if torch.is_tensor(t) else t)
    rel = f"{TEST_VECTOR_DIR}/{name}.bin"
    (root / TEST_VECTOR_DIR).mkdir(exist_ok=True)
    arr.astype(arr.dtype.newbyteorder("<")).tofile(root / rel)
    return {"file": rel, "shape": list(arr.shape), "dtype": str(arr.dtype)}


def parse_quantize(spec: str) -> tuple[str, str]:
    """'int8', 'palettize6', 'int8,palettize4', 'none' -> (ExecuTorch mode, Core ML compression)."""
    from export.lowering.coreml import COMPRESSION_MODES
    from export.lowering.palettization import check_average, is_mixed_mode

    et, coreml = "none", "none"
    for mode in filter(None, (m.strip() for m in spec.split(","))):
        if mode == "none":
            continue
        if mode == "int8":
            et = mode
        elif mode in COMPRESSION_MODES or is_mixed_mode(mode):
            try:
                check_average(mode)
            except ValueError as e:
                raise SDKError(str(e)) from None
            coreml = mode
        else:
            raise SDKError(f"unknown quantization {mode!r}: ExecuTorch takes int8, Core ML takes "
                           f"{', '.join(COMPRESSION_MODES[1:])} or palettize-mixed<bits> (e.g. palettize-mixed3.6); "
                           f"combine them with a comma")
    return et, coreml


def _calibrated_int8(pipe: VideoPipeline, entries: dict[str, list[Entry]], sizes: list[tuple[int, int, int]],
                     prompts: int, log: Callable[[str], None]) -> dict[tuple[str, str], torch.nn.Module]:
    """{(component, entry): simulated-int8 module} of every UNet and decoder entry, calibrated on `prompts`
    pipeline runs per size with each entry's observer where the pipeline calls it."""
    observers = {(comp, e.name): prepare_int8(e.module, e.example) for comp in ("unet", "vae_decoder") for e in entries[comp]}
    runs = default_prompts(prompts)
    for size in sizes:
        log(f"int8 calibration at {format_size(size)}: {len(runs)} pipeline runs "
            f"({pipe.config.scheduler.num_inference_steps} steps each), the UNet and decoder observing")
        observe_pipeline_runs(pipe, [observers["unet", m] for m in _step_methods(pipe, size, sizes[0])],
                              observers["vae_decoder", _decoder_at(size, sizes[0])], runs, size, log=log)
    return {key: convert_int8(observer) for key, observer in observers.items()}


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
    overlap: bool | None = None,
    sizes: list[tuple[int, int, int]] = (),
    log: Callable[[str], None] = print,
) -> dict:
    """Lower `pipe` and write the package; returns the manifest. Raises ParityError if --check fails.

    `quantize` is 'none', 'int8' (ExecuTorch PT2E), a Core ML weight compression (palettize4/6/8,
    linear8), or one of each separated by a comma. `sizes` are (frames, height, width) the package serves
    besides the model's own: every target gets a UNet entry per plan and a decoder entry at each. An
    existing package at `out` is replaced only with `overwrite`; anything else there is never touched.

    `low_memory` (default: when the UNet's fp32 weights pass 1 GiB) lowers each ExecuTorch component in a
    process of its own after releasing `pipe`'s weights (the pipeline is unusable afterwards): peak memory
    is then about one component's lowering, not the whole model's plus it. `overlap` (default: when the
    machine's available memory holds a worker beside this process) starts those workers at once, beside the
    eager test vectors, instead of after them: the wall time of the slower of the two, not of both.
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
    if quantize == "int8" and "executorch" not in targets:
        raise SDKError("int8 quantizes the ExecuTorch programs, and this export writes none (--target "
                       f"{','.join(targets)}); Core ML takes palettize4/6/8, palettize-mixed<bits> or linear8")
    if coreml_compression != "none" and "coreml" not in targets:
        raise SDKError(f"{coreml_compression} compresses the Core ML models, and this export writes none "
                       f"(--target {','.join(targets)}); ExecuTorch takes int8")
    coreml_options = dataclasses.replace(coreml_options or CoreMLOptions(), compression=coreml_compression)
    cfg = pipe.config
    sizes = package_sizes(cfg, list(sizes))
    pipe.scheduler.set_timesteps(cfg.scheduler.num_inference_steps)
    entries = _entries(pipe, sizes)
    plans = {e.plan: e.view.plan.to_dict() for e in entries["unet"]}

    # text encoder stays fp32 under int8: it is <1 % of the compute and prompt embeddings are sensitive.
    component_quant = {"text_encoder": "none", "unet": quantize, "vae_decoder": quantize}
    int8 = _calibrated_int8(pipe, entries, sizes, calibration_prompts, log) if quantize == "int8" else {}
    program_specs = {comp: {e.name: MethodSpec(int8.get((comp, e.name), e.module), e.example, *IO_NAMES[comp])
                            for e in comp_entries} for comp, comp_entries in entries.items()}
    if low_memory is None:
        low_memory = unet_fp32_bytes(pipe) > LOW_MEMORY_ABOVE_BYTES
    if low_memory and "executorch" in targets:
        log("low-memory export: each component is lowered in a process of its own")

    with atomic_dir(out) as tmp:
        components, deferred = {}, {}
        for comp, methods in (program_specs.items() if "executorch" in targets else ()):
            rel = component_path("executorch", comp)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            step = "exporting {} ({}) with torch.export" if low_memory else "lowering {} ({}) to ExecuTorch/XNNPACK"
            log(step.format(comp, ", ".join(methods)) + f", quantization {component_quant[comp]}")
            exported = export_methods(methods)
            components[comp] = {"file": rel, "methods": method_io(methods, exported), "quantization": component_quant[comp]}
            if low_memory:
                deferred[comp] = save_exported(tmp, comp, exported)
            else:
                program, components[comp]["delegation"] = lower_exported(exported, log)
                write_program(program, tmp / rel)
                del program
                _log_written(tmp, rel, log)
            del exported

        workers = WorkerLowering(tmp, deferred, component_quant, log) if deferred else None
        why = overlap_reason(deferred, overlap) if workers else None
        if why:
            log(f"the workers start now, beside the test vectors ({why})")
            workers.start()
        elif workers:
            log("the workers start after the test vectors, once the weights here are released")
        try:
            with leave_a_core(workers) as between:
                tokenizer = {"format": "mobile-sdk-tokenizer", "version": 1, **pipe.tokenizer.to_dict()}
                (tmp / TOKENIZER).write_text(json.dumps(tokenizer, indent=2) + "\n")
                between()
                palettizing = "coreml" in targets and coreml_compression.startswith("palettize")
                with _observing_components(entries, palettizing) as observations:
                    test_vectors, eager = _write_test_vectors(tmp, pipe, entries, sizes[0], quantize, check, log,
                                                              between)
                return_freed_memory()
                coreml, palettization_plans = None, {}
                if "coreml" in targets:
                    meta = {"preset": preset or "", "model": cfg.name, "description": cfg.description,
                            "temporal_plans": plans, "sdk_version": __version__}
                    coreml, palettization_plans = lower_coreml(tmp, entries, IO_NAMES, coreml_options, meta,
                                                               observations, log)
                if check and palettization_plans:
                    coreml["palettization_check"] = check_palettized(pipe, entries, palettization_plans, eager, log)
            manifest = _manifest(pipe, preset, components, sizes, plans, entries, quantize, test_vectors, latency_table)
            if workers:
                del program_specs, entries, int8, palettization_plans
                release_weights(pipe)
                if workers.started:
                    workers.add_lane()  # the core the test vectors used: the next component beside the first
                for comp, report in (workers.wait() if workers.started else workers.run()).items():
                    components[comp]["delegation"] = report
                    _log_written(tmp, components[comp]["file"], log)
                shutil.rmtree(tmp / SCRATCH)
        finally:
            if workers:
                workers.cancel()
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
            manifest["targets"]["executorch"]["parity"] = check_parity(tmp, eager, quantize, log)
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


def _size_record(pipe: VideoPipeline, size: tuple[int, int, int], default: tuple[int, int, int]) -> dict:
    """One entry of the manifest's sizes: video and latent sizes, the steps with their UNet methods, the decoder."""
    cfg, sched = pipe.config, pipe.scheduler
    frames, height, width = size
    f = cfg.vae.downsample_factor
    methods = _step_methods(pipe, size, default)
    return {"video": {"height": height, "width": width, "num_frames": frames, "fps": cfg.fps},
            "latent": {"channels": cfg.vae.latent_channels, "height": height // f, "width": width // f,
                       "layout": "[batch, channels, frames, height, width]"},
            "steps": [{"index": i, "timestep": t, "dt": d, "unet_method": methods[i]}
                      for i, (t, d) in enumerate(zip(sched.timesteps, sched.step_sizes))],
            "vae_decoder_method": _decoder_at(size, default)}


def _manifest(pipe, preset, components, sizes, plans, entries, quantize, test_vectors, latency_table) -> dict:
    cfg = pipe.config
    sched = pipe.scheduler
    records = [_size_record(pipe, size, sizes[0]) for size in sizes]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sdk_version": __version__,
        "tools": tool_versions(),
        "model": {"name": cfg.name, "preset": preset, "description": cfg.description, "trained": pipe.trained,
                  "config": dataclasses.asdict(cfg)},
        "video": records[0]["video"],
        "latent": records[0]["latent"],
        "noise": noise_spec(),
        "tokenizer": {"file": TOKENIZER},
        "scheduler": {**sched.to_dict(), "update": "latents = latents + dt * velocity",
                      "guidance_scale": cfg.guidance_scale,
                      "guidance": "velocity = v_uncond + scale * (v_cond - v_uncond), uncond = the empty prompt"
                      if cfg.guidance_scale != 1.0 else "none"},
        "steps": records[0]["steps"],
        "temporal_plans": plans,
        "unet_methods": _unet_methods(cfg, entries["unet"]),
        "sizes": records,
        "decoder": {"output": "rgb in [0, 1], [frames, 3, height, width]; multiply by 255 and round",
                    "frames_per_call": 1},
        "quantization": {"executorch": {c: v["quantization"] for c, v in components.items()},
                         "method": "PT2E static int8 of convolutions and linears (XNNPACK quantizer, per-channel "
                                   "weights, per-tensor activations; norms, attention and activations stay fp32), "
                                   "min/max ranges observed in the calls of pipeline runs" if quantize == "int8" else "none"},
        "latency_table": latency_table,
        "targets": {"executorch": {"runtime": "ExecuTorch", "delegate": "XNNPACK", "components": components}},
        "test_vectors": test_vectors,
        "files": {},
    }


def _entry_vector(root: Path, comp: str, entry: Entry, outputs: tuple[torch.Tensor, ...], min_db: float, **extra) -> dict:
    """A test vector of one entry: its example inputs and eager outputs under the contract's IO names."""
    key = vector_name(comp, entry.name)
    inputs, output_names = IO_NAMES[comp]
    return {"component": comp, "method": entry.name, **extra,
            "inputs": {n: _write_tensor(root, f"{key}.{n}", x) for n, x in zip(inputs, entry.example)},
            "outputs": {n: _write_tensor(root, f"{key}.{n}", y) for n, y in zip(output_names, outputs)},
            "min_psnr_db": min_db}


@contextlib.contextmanager
def _first_unet_calls(entries: list[Entry], size: tuple[int, int, int]):
    """{entry name: (inputs, outputs)} of the first call of each UNet entry at `size` during the block: the
    pipeline's own call stands as the entry's test vector (one eager 0.6B call fewer per entry). Only
    where the entry runs its view as it is (rectified flow); a DDIM entry wraps it and is called apart."""
    calls: dict[str, tuple] = {}
    hooks = []
    for e in entries:
        if e.size != size or e.module is not e.view:
            continue

        def record(module, args, output, name=e.name, shapes=[tuple(x.shape) for x in e.example]):
            if name not in calls and [tuple(x.shape) for x in args] == shapes:
                calls[name] = (tuple(x.clone() for x in args), (output.clone(),))

        hooks.append(e.view.register_forward_hook(record))
    try:
        yield calls
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def _write_test_vectors(root, pipe, entries: dict[str, list[Entry]], default: tuple[int, int, int], quantize,
                        check: bool, log: Callable[[str], None], between: Callable[[], None] = lambda: None):
    """Small recorded inputs and eager outputs of every entry that the apps' own tests replay (min PSNR
    given), the portable noise of the seed, and the whole pipeline at the default size. Also returns the
    eager results --check compares the written programs against: every method's vector (each layer runs
    once) and the pipeline run, so the gate calls no component a second time (one 0.6B UNet call is ~30 s).
    A UNet entry the pipeline runs takes its vector from the pipeline's first call of it. `between` runs
    after each step, before the decoding and before each entry's call (`leave_a_core`'s: it raises to stop
    at a failed background worker, and gives back the thread the workers had once they are done)."""
    log("computing the test vectors: the 4-step pipeline and every entry, in eager PyTorch")
    noise = torch.from_numpy(portable_normal(TEST_SEED, pipe.latent_shape()))
    noise_name, pipeline_name = contract_names()["noise"]["test_vector"], contract_names()["test_vectors"]["pipeline"]
    pipe.set_progress_bar_config(disable=True)
    # Frames go into the vector up to 1 MB; of larger videos --check alone decodes a few (the 0.6B
    # model's sixteen 512x320 frames take two minutes in eager PyTorch).
    cfg = pipe.config
    small = vector_holds_frames(cfg)
    with _first_unet_calls(entries["unet"], default) as pipeline_calls:
        out = pipe(TEST_PROMPT, latents=noise.clone(), output_type="latent", callback=lambda *_: between())
    frame_index = checked_frames(cfg)
    between()
    frames = pipe.decode(out.latents[:, :, frame_index]) if small or check else None

    component_db = FP32_COMPONENT_MIN_DB if quantize == "none" else INT8_COMPONENT_MIN_DB
    vectors, eager = {}, {"components": {}}
    for comp in COMPONENTS:
        for e in entries[comp]:
            if comp == "unet" and e.name in pipeline_calls:
                example, outputs = pipeline_calls[e.name]
                e = dataclasses.replace(e, example=example)
            else:
                between()
                outputs = e.module(*e.example)
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            key = vector_name(comp, e.name)
            extra = {"prompt": TEST_PROMPT} if comp == "text_encoder" else {}
            min_db = FP32_COMPONENT_MIN_DB if comp == "text_encoder" else component_db
            vectors[key] = _entry_vector(root, comp, e, outputs, min_db, **extra)
            eager["components"][key] = (comp, e.name, e.example, outputs[0])
    vectors[noise_name] = {"component": noise_name, "seed": TEST_SEED, "inputs": {},
                           "outputs": {"noise": _write_tensor(root, noise_name, noise)}, "exact": True}
    e2e = {"component": pipeline_name, "prompt": TEST_PROMPT, "seed": TEST_SEED,
           "inputs": {"initial_latents": _write_tensor(root, "pipeline.initial_latents", noise)},
           "outputs": {"final_latents": _write_tensor(root, "pipeline.final_latents", out.latents)},
           "min_psnr_db": 40.0 if quantize == "none" else INT8_FRAMES_MIN_DB}
    if small:
        e2e["outputs"]["frames"] = _write_tensor(root, "pipeline.frames", frames[0])
    vectors[pipeline_name] = e2e
    eager["pipeline"] = PipelineReference(noise, out.latents, frame_index, frames)
    return vectors, eager


@torch.no_grad()
def check_palettized(pipe: VideoPipeline, entries: dict[str, list[Entry]], plans: dict, refs: dict,
                     log: Callable[[str], None]) -> dict:
    """--check of palettized Core ML weights, run in PyTorch (Core ML cannot run here): the weights Core ML
    stores are exactly the palettized ones, so every palettized entry's test vector and the whole 4-step
    pipeline run with them against fp32. The arithmetic stays fp32: Core ML's fp16 is the macOS test's.
    Raises ParityError below PALETTIZED_FRAMES_MIN_DB on the frames."""
    modules = {(comp, e.name): e.module for comp in plans for e in entries[comp]}
    results: dict = {"components": {}, "computed": "PyTorch fp32 with the palettized weights",
                     "thresholds_db": {"pipeline_frames_min": PALETTIZED_FRAMES_MIN_DB}}
    log("  --check: the palettized weights in PyTorch against fp32 (Core ML cannot run here)")
    with contextlib.ExitStack() as stack:
        for comp, plan in plans.items():
            stack.enter_context(palettized(plan))
        for key, (comp, name, args, expected) in refs["components"].items():
            if (comp, name) in modules:
                out = modules[comp, name](*args)
                results["components"][key] = psnr(expected, out[0] if isinstance(out, tuple) else out)
        results.update(compare_pipeline(pipe, refs["pipeline"]))
    for k, v in results["components"].items():
        log(f"  palettized {k}: {v:.1f} dB")
    log(_pipeline_line("palettized", results, pipe.config.num_frames))
    if results["pipeline_frames_db"] < PALETTIZED_FRAMES_MIN_DB:
        raise ParityError(f"palettization check failed: frames {results['pipeline_frames_db']:.1f} dB against fp32 "
                          f"(needs >= {PALETTIZED_FRAMES_MIN_DB} dB); use more bits per weight; no package was written")
    results["passed"] = True
    return results


def check_parity(root: Path, refs: dict, quantize: str, log: Callable[[str], None]) -> dict:
    """PSNR of each written program against eager, then of the whole 4-step pipeline (the test vector's
    noise, at the default size); raises ParityError below the thresholds."""
    from mobile_sdk.package import open_package
    from mobile_sdk.runtime import ExecuTorchProgram, pipeline_from_package

    pkg = open_package(root, verify=False)
    programs = {c: ExecuTorchProgram(pkg.path(pkg.component("executorch", c)["file"])) for c in COMPONENTS}
    pte = pipeline_from_package(pkg)
    results: dict = {"components": {}, "thresholds_db": {}}
    with torch.no_grad():
        for key, (comp, name, args, expected) in refs["components"].items():
            results["components"][key] = psnr(expected, programs[comp].run(name, *args)[0])
        pte.set_progress_bar_config(disable=True)
        results.update(compare_pipeline(pte, refs["pipeline"]))
    pkg.close()
    for k, v in results["components"].items():
        log(f"  parity {k}: {v:.1f} dB")
    log(_pipeline_line("parity", results, pte.config.num_frames))
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
