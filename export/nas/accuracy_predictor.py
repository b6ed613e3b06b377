"""Quality of a sub-network without retraining: its validation loss with the supernet's shared weights.

Fixed held-out clips (never trained on), fixed noise and the base model's fixed timesteps, so the same
plan always gets the same number. Losses are kept per denoising step, so a step-aware candidate (one
plan per step) costs nothing extra: its loss is the mean of its plans' losses at their own steps.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from mobile_sdk.errors import SDKError
from mobile_sdk.scheduler import RectifiedFlowScheduler

from export.nas.elastic import elastic_forward
from export.nas.supernet import SupernetUNet, load_supernet
from export.nas.supernet_train import base_target, supernet_pool, trained_base_weight


@torch.no_grad()
def held_out_targets(latents: torch.Tensor, noise: torch.Tensor, hidden: torch.Tensor, timesteps: list[float],
                     base=None, base_weight: float = 0.0, batch: int = 16) -> list[torch.Tensor]:
    """Per timestep, what a sub-network should predict on the fixed clips and noise: the data's velocity
    mixed with the shipped model's prediction as the supernet was trained (supernet_train.base_target)."""
    velocity = RectifiedFlowScheduler.velocity(latents, noise)
    targets = []
    for t in timesteps:
        chunks = []
        for i in range(0, len(latents), batch):
            tt = torch.full((len(latents[i:i + batch]),), t)
            xt = RectifiedFlowScheduler.add_noise(latents[i:i + batch], noise[i:i + batch], tt)
            chunks.append(base_target(base, xt, tt, hidden[i:i + batch], velocity[i:i + batch], base_weight))
        targets.append(torch.cat(chunks))
    return targets


@torch.no_grad()
def held_out_losses(predict, latents: torch.Tensor, noise: torch.Tensor, targets: list[torch.Tensor],
                    hidden: torch.Tensor, timesteps: list[float], batch: int) -> np.ndarray:
    """Per-timestep loss of `predict(x_t, t, hidden)` against `targets` (held_out_targets) on fixed clips."""
    losses = []
    for t, target in zip(timesteps, targets):
        total = 0.0
        for i in range(0, len(latents), batch):
            x0, eps = latents[i:i + batch], noise[i:i + batch]
            tt = torch.full((len(x0),), t)
            pred = predict(RectifiedFlowScheduler.add_noise(x0, eps, tt), tt, hidden[i:i + batch])
            total += float(((pred - target[i:i + batch]) ** 2).sum())
        losses.append(total / latents.numel())
    return np.array(losses)


class _PerStepLoss:
    """`loss` of one row (every step) or of one row per step (each at its own step)."""

    def loss(self, codes: np.ndarray) -> float:
        codes = np.asarray(codes)
        if codes.ndim == 1:
            return float(self.step_losses(codes).mean())
        return float(np.mean([self.step_losses(c)[s] for s, c in enumerate(codes)]))


class SupernetEvaluator(_PerStepLoss):
    """`step_losses(codes[S]) -> [steps]`; `loss(codes[S] or [steps, S]) -> float` (lower is better)."""

    label = "supernet validation loss"

    def __init__(self, net: SupernetUNet, hidden: torch.Tensor, latents: torch.Tensor, timesteps: list[float], seed: int = 0,
                 batch: int = 16, base=None, base_weight: float = 0.0):
        self.net = net.eval()
        self.hidden, self.latents, self.timesteps, self.batch = hidden, latents, [float(t) for t in timesteps], batch
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(latents.shape, generator=g)
        self.targets = held_out_targets(latents, self.noise, hidden, self.timesteps, base, base_weight, batch)
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
        evaluator = cls(net, hidden, latents, meta["timesteps"], seed=meta["seed"], base=pipe.unet,
                        base_weight=trained_base_weight(meta))
        evaluator.model_config = pipe.config
        return evaluator

    def step_losses(self, codes: np.ndarray) -> np.ndarray:
        key = np.asarray(codes, dtype=np.int8).tobytes()
        if key not in self._cache:
            self.net.set_plan(codes)
            self._cache[key] = held_out_losses(self.net, self.latents, self.noise, self.targets, self.hidden,
                                               self.timesteps, self.batch)
            self.evaluations += 1
        return self._cache[key]


def _require_supernet_for_plans(net, space) -> None:
    if "temporal" in space.axes and not isinstance(net, SupernetUNet):
        raise SDKError("--space temporal,... needs --supernet (a plain model runs only its own plan)")


class ElasticEvaluator(_PerStepLoss):
    """Quality of whole-space genomes (export.nas.genome): the validation loss of each row's (plan,
    sub-network, resolution) with shared weights, `elastic_forward` slicing the backbone at run time.

    `net` is the temporal supernet (every plan) or a plain VideoUNet (its own plan only: the temporal axis
    needs a supernet). Each resolution gets the same held-out clips rendered at that size (the first
    `held_out` clips of the training pool's stream, as `supernet_pool` splits them), its own fixed noise,
    and the same timesteps, so a row always gets the same number. Per-step losses as in SupernetEvaluator:
    a step-aware genome's loss is the mean of its rows' losses at their own steps, so a genome that repeats
    one row scores exactly that row's loss."""

    def __init__(self, net, space, hidden: torch.Tensor, latents_at, timesteps: list[float], label: str,
                 seed: int = 0, batch: int = 16, base=None, base_weight: float = 0.0):
        _require_supernet_for_plans(net, space)
        self.net, self.space, self.hidden, self.latents_at = net.eval(), space, hidden, latents_at
        self.base, self.base_weight = base, base_weight
        self.timesteps, self.label, self.seed, self.batch = [float(t) for t in timesteps], label, seed, batch
        self._data: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._cache: dict[bytes, np.ndarray] = {}
        self.evaluations = 0

    @classmethod
    def from_model(cls, net, pipe, space, directory: str | Path, held_out: int, seed: int, timesteps: list[float],
                   label: str, progress: bool = True, base_weight: float = 0.0, **kwargs) -> "ElasticEvaluator":
        """Held-out clips of the pool seeded like supernet training's, cached under `directory`; targets
        mixed with `pipe`'s model's prediction by `base_weight` as the supernet was trained."""
        _require_supernet_for_plans(net, space)
        from export.train.teacher import latent_pool

        def latents_at(resolution: tuple[int, int]) -> torch.Tensor:
            cfg = dataclasses.replace(pipe.config, height=resolution[0], width=resolution[1])
            cache = Path(directory) / f"held_out_{held_out}_{resolution[0]}x{resolution[1]}.safetensors"
            return latent_pool(pipe.vae_decoder.vae, cfg, held_out, seed + 7, cache, progress)[0]

        first = latent_pool(pipe.vae_decoder.vae, pipe.config, held_out, seed + 7,
                            Path(directory) / f"held_out_{held_out}_{pipe.config.height}x{pipe.config.width}.safetensors",
                            progress)[1]
        with torch.no_grad():
            hidden, _ = pipe.text_encoder(pipe.tokenizer(first))
        return cls(net, space, hidden, latents_at, timesteps, label, seed, base=pipe.unet, base_weight=base_weight,
                   **kwargs)

    def _at(self, resolution: tuple[int, int]):
        if resolution not in self._data:
            latents = self.latents_at(resolution)
            g = torch.Generator().manual_seed(self.seed + resolution[0] * 1000 + resolution[1])
            noise = torch.randn(latents.shape, generator=g)
            self._data[resolution] = (latents, noise, held_out_targets(latents, noise, self.hidden, self.timesteps,
                                                                       self.base, self.base_weight, self.batch))
        return self._data[resolution]

    def _forward(self, row: np.ndarray, subnet, x, t, hidden) -> torch.Tensor:
        if isinstance(self.net, SupernetUNet):  # supernet.py's (plan, subnet) forward on the shared weights
            return self.net.forward_subnet([int(c) for c in self.space.temporal_codes(row)], subnet, x, t, hidden)
        return elastic_forward(self.net, subnet, x, t, hidden)

    def step_losses(self, row: np.ndarray) -> np.ndarray:
        key = np.asarray(row, np.int8).tobytes()
        if key not in self._cache:
            subnet, resolution = self.space.subnet(row), self.space.resolution(row)
            latents, noise, targets = self._at(resolution)
            self._cache[key] = held_out_losses(lambda x, t, h: self._forward(row, subnet, x, t, h), latents, noise,
                                               targets, self.hidden, self.timesteps, self.batch)
            self.evaluations += 1
        return self._cache[key]


class RolloutEvaluator(ElasticEvaluator):
    """Quality of a whole schedule: the error of its few-step rollout from fixed noise against the base
    (shipped) model's rollout from the same noise, on the held-out prompts. A per-step loss scores every
    step on noised data; a schedule's later steps see the latents its own earlier steps made, so errors
    that compound over the steps show only here. A genome repeating one row is that sub-network run at
    every step, so uniform and step-aware candidates are scored alike."""

    def __init__(self, *args, scheduler: RectifiedFlowScheduler, **kwargs):
        super().__init__(*args, **kwargs)
        if self.base is None:
            raise SDKError("the rollout objective needs the base model to roll out against")
        self.scheduler = scheduler  # the pipeline's: its step() is the update the sampler makes
        self._reference: dict[tuple[int, int], torch.Tensor] = {}

    @torch.no_grad()
    def _rollout(self, predict_at, noise: torch.Tensor) -> torch.Tensor:
        """The final latents of the scheduler's steps at `timesteps`, `predict_at(step)` giving each step's model."""
        x = noise
        for s, t in enumerate(self.timesteps):
            predict, out = predict_at(s), []
            for i in range(0, len(x), self.batch):
                out.append(predict(x[i:i + self.batch], torch.full((len(x[i:i + self.batch]),), t),
                                   self.hidden[i:i + self.batch]))
            x = self.scheduler.step(torch.cat(out), t, x).prev_sample
        return x

    def loss(self, codes: np.ndarray) -> float:
        codes = np.asarray(codes)
        rows = codes[None] if codes.ndim == 1 else codes
        key = np.asarray(rows, np.int8).tobytes()
        if key not in self._cache:
            resolution = self.space.resolution(rows[0])
            noise = self._at(resolution)[1]
            if resolution not in self._reference:
                self._reference[resolution] = self._rollout(lambda s: self.base, noise)
            subnets = [self.space.subnet(r) for r in rows]

            def predict_at(s: int):
                k = 0 if len(rows) == 1 else s
                return lambda x, t, h: self._forward(rows[k], subnets[k], x, t, h)

            final = self._rollout(predict_at, noise)
            self._cache[key] = np.array(float(((final - self._reference[resolution]) ** 2).mean()))
            self.evaluations += 1
        return float(self._cache[key])
