"""A diffusers scheduler_config.json -> our deterministic DDIM over the checkpoint's noise schedule.

Every DDPM-family sampler (PNDM, DDIM, Euler, DPM-Solver, ...) of an SD-1.5-family checkpoint shares the
training noise schedule; we sample it with DDIM (deterministic, as diffusers' DDIMScheduler.from_config)."""
from __future__ import annotations

from pathlib import Path

from mobile_sdk.config import SchedulerConfig

from .checkpoint import require

DDPM_FAMILY = ("DDIMScheduler", "PNDMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
               "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverMultistepScheduler",
               "UniPCMultistepScheduler", "HeunDiscreteScheduler")


def scheduler_config(cfg: dict, where: Path, steps: int) -> SchedulerConfig:
    name = cfg.get("_class_name")
    require(name in DDPM_FAMILY, where, f"scheduler {name!r} is not supported (a DDPM-family scheduler: {', '.join(DDPM_FAMILY)})")
    prediction = cfg.get("prediction_type", "epsilon")
    require(prediction in ("epsilon", "v_prediction"), where, f"prediction_type {prediction!r} (epsilon or v_prediction)")
    schedule = cfg.get("beta_schedule", "linear")
    require(schedule in ("scaled_linear", "linear"), where, f"beta_schedule {schedule!r} (scaled_linear or linear)")
    require(cfg.get("trained_betas") is None, where, "trained_betas are not supported")
    require(not cfg.get("rescale_betas_zero_snr", False), where, "rescale_betas_zero_snr is not supported")
    spacing = cfg.get("timestep_spacing", "leading")
    require(spacing in ("leading", "trailing", "linspace"), where, f"timestep_spacing {spacing!r}")
    return SchedulerConfig(
        num_inference_steps=steps, type="ddim", prediction_type=prediction,
        num_train_timesteps=cfg.get("num_train_timesteps", 1000), beta_start=float(cfg.get("beta_start", 0.0001)),
        beta_end=float(cfg.get("beta_end", 0.02)), beta_schedule=schedule, timestep_spacing=spacing,
        steps_offset=cfg.get("steps_offset", 0), set_alpha_to_one=cfg.get("set_alpha_to_one", True),
    )
