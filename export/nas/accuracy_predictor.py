"""Quality of a sub-network without retraining: its validation loss with the supernet's shared weights.

Fixed held-out clips (never trained on), fixed noise and the base model's fixed timesteps, so the same
plan always gets the same number. Losses are kept per denoising step, so a step-aware candidate (one
plan per step) costs nothing extra: its loss is the mean of its plans' losses at their own steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobile_sdk.scheduler import RectifiedFlowScheduler

from export.nas.supernet import SupernetUNet, load_supernet
from export.nas.supernet_train import supernet_pool


class SupernetEvaluator:
    """`step_losses(codes[S]) -> [steps]`; `loss(codes[S] or [steps, S]) -> float` (lower is better)."""

    label = "supernet validation loss"

    def __init__(self, net: SupernetUNet, hidden: torch.Tensor, latents: torch.Tensor, timesteps: list[float], seed: int = 0,
                 batch: int = 16):
        self.net = net.eval()
        self.hidden, self.latents, self.timesteps, self.batch = hidden, latents, [float(t) for t in timesteps], batch
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(latents.shape, generator=g)
        self.velocity = RectifiedFlowScheduler.velocity(latents, self.noise)
        self._cache: dict[bytes, np.ndarray] = {}
        self.model_config = None  # the base model's config, when loaded from a supernet folder
        self.evaluations = 0

    @classmethod
    def from_dir(cls, directory: str | Path, progress: bool = True) -> "SupernetEvaluator":
        return cls.from_loaded(*load_supernet(directory), directory, progress)

    @classmethod
    def from_loaded(cls, net: SupernetUNet, pipe, meta: dict, directory: str | Path,
                    progress: bool = True) -> "SupernetEvaluator":
        """For a supernet already loaded with `load_supernet(directory)`."""
        _, (latents, prompts) = supernet_pool(pipe, Path(directory), meta["training"]["config"]["pool_clips"],
                                              meta["held_out_clips"], meta["seed"], progress)
        with torch.no_grad():
            hidden, _ = pipe.text_encoder(pipe.tokenizer(prompts))
        evaluator = cls(net, hidden, latents, meta["timesteps"], seed=meta["seed"])
        evaluator.model_config = pipe.config
        return evaluator

    @torch.no_grad()
    def step_losses(self, codes: np.ndarray) -> np.ndarray:
        key = np.asarray(codes, dtype=np.int8).tobytes()
        if key not in self._cache:
            self.net.set_plan(codes)
            losses = []
            for t in self.timesteps:
                total = 0.0
                for i in range(0, len(self.latents), self.batch):
                    x0, eps = self.latents[i:i + self.batch], self.noise[i:i + self.batch]
                    tt = torch.full((len(x0),), t)
                    pred = self.net(RectifiedFlowScheduler.add_noise(x0, eps, tt), tt, self.hidden[i:i + self.batch])
                    total += float(((pred - self.velocity[i:i + self.batch]) ** 2).sum())
                losses.append(total / self.latents.numel())
            self._cache[key] = np.array(losses)
            self.evaluations += 1
        return self._cache[key]

    def loss(self, codes: np.ndarray) -> float:
        codes = np.asarray(codes)
        if codes.ndim == 1:
            return float(self.step_losses(codes).mean())
        return float(np.mean([self.step_losses(c)[s] for s, c in enumerate(codes)]))
