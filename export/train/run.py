"""`mobile-sdk train`: the stages in order, each resumable, writing into one run folder.

  RUN/vae/        report.json, loss.png, vae/ (the trained autoencoder)
  RUN/teacher/    report.json, loss.png, model/ (a model folder: the 25-step teacher)
  RUN/distill/    report.json, loss.png, model/ (the 4-step distilled model)
  RUN/eval/       report.json, report.md, samples.png

From a model folder (`start_from`: an imported image model, or any model of ours) there is no VAE
stage: the teacher stage starts from the folder's weights (temporal layers only by default).

Under torchrun the training stages run on every rank (export.train.distributed); rank 0 alone
prints, writes, evaluates and ships, and the other ranks stop after the last training stage.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from mobile_sdk.config import ModelConfig
from mobile_sdk.errors import SDKError
from mobile_sdk.pipeline import VideoPipeline

from export.train.distill import DistillConfig, train_distilled
from export.train.distributed import rank_and_world
from export.train.evaluate import compare_models, format_report
from export.train.teacher import TeacherTrainConfig, train_teacher
from export.train.vae import VAETrainConfig, train_vae

STAGES = ("vae", "teacher", "distill", "evaluate")


def run_training(model_cfg: ModelConfig | None, run_dir: str | Path, stages: list[str], vae_cfg: VAETrainConfig,
                 teacher_cfg: TeacherTrainConfig, distill_cfg: DistillConfig, ship_to: str | Path | None = None,
                 progress: bool = True, start_from: str | Path | None = None) -> dict:
    run = Path(run_dir)
    if start_from is not None and "vae" in stages:
        raise SDKError(f"{start_from}: a model folder brings its own VAE; train the stages teacher, distill, evaluate")
    reports = {}
    main_rank = rank_and_world()[0] == 0
    say = print if main_rank else (lambda *a: None)
    if "vae" in stages:
        reports["vae"] = train_vae(model_cfg, run / "vae", vae_cfg, progress)
        say("vae:", json.dumps(reports["vae"]))
    if "teacher" in stages:
        reports["teacher"] = train_teacher(model_cfg, run / "vae" / "vae", run / "teacher", teacher_cfg, progress, start_from)
        say("teacher:", json.dumps(reports["teacher"]))
    if "distill" in stages:
        reports["distill"] = train_distilled(run / "teacher" / "model", run / "distill", distill_cfg, progress)
        say("distill:", json.dumps({k: v for k, v in reports["distill"].items() if k != "config"}))
    if not main_rank:
        return reports
    if "evaluate" in stages:
        teacher = VideoPipeline.from_pretrained(run / "teacher" / "model").config
        teacher_steps, g = teacher.scheduler.num_inference_steps, teacher.guidance_scale
        results = compare_models({
            f"teacher {teacher_steps} steps": (run / "teacher" / "model", teacher_steps, g),
            "teacher 4 steps": (run / "teacher" / "model", 4, g),
            "distilled 4 steps": (run / "distill" / "model", 4, 1.0),
        }, run / "eval", progress)
        print(format_report(results))
        reports["evaluate"] = {k: {m: v for m, v in r.items() if m != "readings"} for k, r in results.items()}
    if ship_to:
        ship(run, ship_to)
        print(f"shipped the distilled model to {ship_to}")
    return reports


def ship(run_dir: str | Path, target: str | Path) -> None:
    """The distilled model as fp16 safetensors, with its training and evaluation reports beside it."""
    run = Path(run_dir)
    pipe = VideoPipeline.from_pretrained(run / "distill" / "model")
    extra = {}
    for stage in ("vae", "teacher", "distill"):
        path = run / stage / "report.json"
        if path.is_file():
            extra[f"{stage}_report"] = json.loads(path.read_text())
    eval_report = run / "eval" / "report.json"
    if eval_report.is_file():
        data = json.loads(eval_report.read_text())
        extra["evaluation"] = {k: {m: v for m, v in r.items() if m != "readings"} for k, r in data.items()}
    pipe.save_pretrained(target, dtype=torch.float16, extra={"training": extra})
    if (run / "eval" / "report.md").is_file():
        shutil.copy(run / "eval" / "report.md", Path(target) / "EVALUATION.md")
