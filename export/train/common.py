"""Shared training plumbing: reproducible batches from the synthetic data, and EMA weights.

The training loop itself (resume, checkpoints, schedule, history) is `export.train.loop`.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from export.train.synthetic import SyntheticVideos


def clips_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> float [B, T, 3, H, W] in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255.0


class ClipStream:
    """Endless, reproducible batches: batch k of a stream is the same clips every run (so resume is exact)."""

    def __init__(self, height: int, width: int, num_frames: int, batch_size: int, seed: int):
        self.data = SyntheticVideos(height, width, num_frames, seed=seed)
        self.batch_size = batch_size

    def batch(self, k: int) -> tuple[torch.Tensor, list[str]]:
        frames, prompts, _ = self.data.batch(k * self.batch_size, self.batch_size)
        return clips_to_tensor(frames), prompts


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1 - d)
