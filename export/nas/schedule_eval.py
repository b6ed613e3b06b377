"""Proof of searched schedules (SNED, DDSM): what a sub-network, or a sub-network per step, costs and keeps.

Each entry (the supernet's full model, or a `mobile-sdk search` result) is extracted from the supernet's
shared weights (really smaller UNets, one per distinct step sub-network), given the same short fine-tune
(export.nas.finetune; each view on the timesteps of the steps it serves), exported as an ExecuTorch
package, and then measured from that package: quality on all 60 prompts (export.train.quality), UNet GFLOPs over the
steps from the manifest, and latency of the denoising loop and of the whole video in interleaved rounds
(this machine's speed drifts; each round times every entry once).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mobile_sdk.atomic import atomic_file
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.plan import load_plan_file
from mobile_sdk.runtime import pipeline_from_package

from export.lowering.package_writer import export_package
from export.nas.searched import apply_searched_subnets
from export.nas.supernet import load_supernet, supernet_pipeline
from export.nas.finetune import finetune_extracted
from export.nas.supernet_train import SupernetTrainConfig, supernet_config, supernet_pool
from export.train.synthetic import all_prompts, prompt_for
from export.train.evaluate import contact_sheet, generate_clips
from export.train.quality import score_clips

FULL = "full model"
LATENCY_PROMPT = "a red circle moving right"


def _views(unet) -> list[tuple[torch.nn.Module, list[int]]]:
    """(view, the steps it serves) of a step-aware UNet, or the one UNet serving every step."""
    if isinstance(unet, StepAwareUNet):
        return [(v, [s for s, i in enumerate(unet.step_to_view) if i == k]) for k, v in enumerate(unet.views)]
    return [(unet, None)]


def finetune(pipe, teacher, pool, prompts, cfg: SupernetTrainConfig, steps: int, seed: int) -> None:
    """The short fine-tune every entry gets: each view at its own steps' timesteps."""
    all_t = pipe.scheduler.timesteps
    for k, (view, served) in enumerate(_views(pipe.unet)):
        timesteps = torch.tensor([all_t[s] for s in served] if served is not None else all_t)
        finetune_extracted(view, teacher, pool, prompts, pipe.text_encoder, pipe.tokenizer, timesteps, cfg, steps,
                           seed * 7919 + k * 100_003)


def _unet_gflops(manifest: dict) -> float:
    """UNet GFLOPs over the steps (each step's method once, at batch 1; guidance would double it)."""
    methods = manifest["unet_methods"]
    return sum(methods[s["unet_method"]]["flops_per_call"] for s in manifest["steps"]) / 1e9


def evaluate_schedules(supernet_dir: str | Path, plans: list[str | None], out_dir: str | Path, finetune_steps: int = 100,
                       rounds: int = 5, seed: int = 0, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """`plans`: search results (None: the full model). Writes report.json and report.md into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, base, meta = load_supernet(supernet_dir)
    cfg = supernet_config(meta)
    (pool, prompts), _ = supernet_pool(base, Path(supernet_dir), cfg.pool_clips, meta["held_out_clips"], meta["seed"],
                                       progress)
    teacher = base.unet.eval().requires_grad_(False)
    rows, packages, samples = [], {}, {}
    for plan in plans:
        label = FULL if plan is None else Path(plan).stem
        log(f"{label}: extracting and fine-tuning ({finetune_steps} steps per sub-network)")
        pipe = apply_searched_subnets(supernet_pipeline(supernet_dir, load_plan_file(plan) if plan else None), plan)
        finetune(pipe, teacher, pool, prompts, cfg, finetune_steps, seed)
        pkg = out / f"{label.replace(' ', '-')}.mobilepkg"
        manifest = export_package(pipe, pkg, overwrite=True, low_memory=False, log=lambda s: None)
        runtime = pipeline_from_package(pkg)
        runtime.set_progress_bar_config(disable=True)
        clips, targets = generate_clips(runtime, len(manifest["steps"]), runtime.config.guidance_scale, progress=progress)
        samples[label] = clips
        scores = {k: v for k, v in score_clips(clips, targets).items() if k != "readings"}
        rows.append({"label": label, "plan": plan, "unet_gflops": _unet_gflops(manifest),
                     "methods": len(manifest["unet_methods"]), **scores})
        packages[label] = runtime
        log(f"{label}: {rows[-1]['unet_gflops']:.3f} UNet GFLOPs over the steps, colour+direction "
            f"{scores['color_and_direction_accuracy']:.0%}")
    timings = _interleaved_latency(packages, rounds, seed)
    for row in rows:
        row.update(timings[row["label"]])
    full = next((r for r in rows if r["label"] == FULL), None)
    for row in rows:
        if full:
            row["flops_saved"] = 1 - row["unet_gflops"] / full["unet_gflops"]
            row["color_and_direction_drop_points"] = 100 * (full["color_and_direction_accuracy"]
                                                            - row["color_and_direction_accuracy"])
    report = {"supernet": str(supernet_dir), "supernet_steps": meta["training"]["steps"], "finetune_steps": finetune_steps,
              "finetune": "each view at its steps' timesteps; target (1 - b) data velocity + b shipped full model, b = "
                          f"{cfg.base_target_weight}; temporal lr {cfg.lr}, backbone x{cfg.backbone_lr_scale}; batch {cfg.batch_size}",
              "latency": f"ExecuTorch fp32 package, Python runtime, {torch.get_num_threads()} threads, median of "
                         f"{rounds} interleaved rounds", "rows": rows}
    with atomic_file(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(out / "report.md") as tmp:
        tmp.write_text(format_table(report) + "\n")
    contact_sheet(samples, out / "samples.png", [prompt_for(*t) for t in all_prompts()])
    return report


def _interleaved_latency(packages: dict, rounds: int, seed: int) -> dict[str, dict[str, float]]:
    samples = {label: {"denoise_ms": [], "video_ms": []} for label in packages}
    for label, runtime in packages.items():  # warm-up
        runtime(LATENCY_PROMPT, generator=torch.Generator().manual_seed(seed))
    for _ in range(rounds):
        for label, runtime in packages.items():
            start = time.perf_counter()
            result = runtime(LATENCY_PROMPT, generator=torch.Generator().manual_seed(seed))
            samples[label]["video_ms"].append((time.perf_counter() - start) * 1e3)
            samples[label]["denoise_ms"].append(result.timings_ms["denoise_ms"])
    return {label: {f"{k}_median": float(np.median(v)) for k, v in s.items()} for label, s in samples.items()}


def format_table(report: dict) -> str:
    lines = ["| schedule | UNet methods | UNet GFLOPs (all steps) | FLOPs saved | denoise (ms) | video (ms) | colour | "
             "direction | colour+direction | drop (points) | bg flicker |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['label']} | {r['methods']} | {r['unet_gflops']:.3f} | {r.get('flops_saved', 0):.0%} | "
                     f"{r['denoise_ms_median']:.1f} | {r['video_ms_median']:.1f} | {r['color_accuracy']:.0%} | "
                     f"{r['direction_accuracy']:.0%} | {r['color_and_direction_accuracy']:.0%} | "
                     f"{r.get('color_and_direction_drop_points', 0):.1f} | {r['background_flicker_mean']:.2f} |")
    return "\n".join(lines)
