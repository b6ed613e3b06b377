"""Prompt adherence and temporal consistency of trained models on a fixed prompt set (all 60 prompts)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from export.train.quality import score_clips
from export.train.synthetic import all_prompts, prompt_for, render, sample_spec
from mobile_sdk.pipeline import VideoPipeline


def generate_clips(pipe: VideoPipeline, steps: int, guidance: float, seed: int = 1234, batch: int = 12,
                   progress: bool = True) -> tuple[list[np.ndarray], list[tuple[str, str, str]]]:
    targets = all_prompts()
    pipe.set_progress_bar_config(disable=True)
    clips: list[np.ndarray] = []
    for i in tqdm(range(0, len(targets), batch), desc=f"eval {steps} steps", disable=not progress):
        chunk = targets[i : i + batch]
        out = pipe([prompt_for(*c) for c in chunk], num_inference_steps=steps, guidance_scale=guidance,
                   generator=torch.Generator().manual_seed(seed + i))
        clips.extend(out.frames)
    return clips, targets


def real_reference(height: int, width: int, num_frames: int, seed: int = 1234) -> dict:
    """The same scores on ground-truth clips: the ceiling of the check."""
    rng = np.random.default_rng(seed)
    targets = all_prompts()
    clips = [render(sample_spec(rng, height, width, num_frames, *t), height, width, num_frames) for t in targets]
    return score_clips(clips, targets)


def contact_sheet(rows: dict[str, list[np.ndarray]], path: Path, prompts: list[str], columns: int = 6) -> None:
    """PNG: for the first `columns` prompts, each model's frames side by side (first, middle, last frame)."""
    from PIL import Image, ImageDraw

    tiles = []
    for name, clips in rows.items():
        row = []
        for clip in clips[:columns]:
            t = len(clip)
            row.append(np.concatenate([clip[0], clip[t // 2], clip[-1]], axis=1))
        tiles.append((name, np.concatenate(row, axis=1)))
    h, w = tiles[0][1].shape[:2]
    label_w = 130
    sheet = Image.new("RGB", (w + label_w, (h + 4) * len(tiles) + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, p in enumerate(prompts[:columns]):
        draw.text((label_w + j * (w // columns) + 2, 2), p.replace("a ", "").replace(" moving", ""), fill=(0, 0, 0))
    for i, (name, img) in enumerate(tiles):
        sheet.paste(Image.fromarray(img), (label_w, 16 + i * (h + 4)))
        draw.text((4, 16 + i * (h + 4) + h // 2), name, fill=(0, 0, 0))
    sheet.save(path)


def compare_models(models: dict[str, tuple[str | Path, int, float]], out_dir: str | Path, progress: bool = True) -> dict:
    """models: name -> (model dir, steps, guidance). Writes report.json, report.md and samples.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows = {}, {}
    reference = None
    for name, (model_dir, steps, guidance) in models.items():
        pipe = VideoPipeline.from_pretrained(model_dir)
        if reference is None:
            cfg = pipe.config
            reference = real_reference(cfg.height, cfg.width, cfg.num_frames)
        clips, targets = generate_clips(pipe, steps, guidance, progress=progress)
        scores = score_clips(clips, targets)
        scores.update(model=str(model_dir), steps=steps, guidance_scale=guidance)
        results[name] = scores
        rows[name] = clips
    results["real data"] = reference
    prompts = [prompt_for(*t) for t in all_prompts()]
    contact_sheet(rows, out_dir / "samples.png", prompts)
    (out_dir / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "report.md").write_text(format_report(results) + "\n")
    return results


def format_report(results: dict) -> str:
    lines = [
        "| model | steps | CFG | colour | shape | direction | colour+direction | all three | bg flicker | area CV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r.get('steps', '-')} | {r.get('guidance_scale', '-')} | {r['color_accuracy']:.0%} | "
            f"{r['shape_accuracy']:.0%} | {r['direction_accuracy']:.0%} | {r['color_and_direction_accuracy']:.0%} | "
            f"{r['all_accuracy']:.0%} | {r['background_flicker_mean']:.2f} | {r['object_area_cv_mean']:.3f} |"
        )
    return "\n".join(lines)
