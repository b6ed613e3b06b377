"""int8 calibration on real pipeline runs: the observers sit where the pipeline calls the UNet and the decoder.

Each observer (`export.lowering.executorch.prepare_int8`) computes what its module computes, so the
pipeline runs on it and every step's call is observed once: recording the inputs and replaying them
through the observers afterwards called the 0.6B UNet twice per step, and decoded every frame of every
run to keep sixteen.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from export.train.synthetic import all_prompts, prompt_for
from mobile_sdk.pipeline import VideoPipeline, frame_latents


def default_prompts(n: int) -> list[str]:
    """n prompts spread over the synthetic vocabulary (what the demo model was trained on)."""
    targets = all_prompts()
    stride = max(1, len(targets) // n)
    return [prompt_for(*targets[(i * stride + i) % len(targets)]) for i in range(n)]


class _ObservedSteps(VideoPipeline):
    """`pipe`'s components, with each step's velocity computed by that step's observer."""

    def __init__(self, pipe: VideoPipeline, step_observers: list):
        super().__init__(pipe.config, pipe.text_encoder, pipe.unet, pipe.vae_decoder, pipe.tokenizer, pipe.trained)
        self.step_observers = step_observers
        self.set_progress_bar_config(disable=True)

    def velocity_for_step(self, step: int):
        return self.step_observers[step]


@torch.no_grad()
def observe_pipeline_runs(pipe: VideoPipeline, step_observers: list, decoder_observer, prompts: list[str],
                          size: tuple[int, int, int] | None = None, seed: int = 0, max_decoder_frames: int = 16,
                          log: Callable[[str], None] = lambda s: None) -> None:
    """One pipeline run per prompt at `size` (frames, height, width; default: the model's), step i's
    velocity computed by `step_observers[i]` (steps sharing a method share its observer); then about
    `max_decoder_frames` of the runs' final latents, spread evenly over them, one frame per call through
    `decoder_observer`. Observers take batch-1 inputs: runs are one prompt each, guidance two calls."""
    steps = pipe.config.scheduler.num_inference_steps
    if len(step_observers) != steps:
        raise ValueError(f"{len(step_observers)} step observers for {steps} denoising steps")
    frames, height, width = size or (None, None, None)
    observed = _ObservedSteps(pipe, step_observers)
    start, latents = time.perf_counter(), []
    for i, prompt in enumerate(prompts):
        latents.append(observed(prompt, num_frames=frames, height=height, width=width, output_type="latent",
                                generator=torch.Generator().manual_seed(seed + i)).latents)
        log(f"  run {i + 1}/{len(prompts)} observed ({time.perf_counter() - start:.0f} s)")
    flat = torch.cat([frame_latents(z) for z in latents])  # [runs * frames, C, h, w]
    picked = range(0, flat.shape[0], max(1, flat.shape[0] // max_decoder_frames))
    for i in picked:
        decoder_observer(flat[i : i + 1])
    log(f"  {len(picked)} decoded frames observed ({time.perf_counter() - start:.0f} s)")
