"""Schedulers: rectified-flow Euler (our models) and deterministic DDIM (imported SD-1.5-family models).

Rectified flow: x_t = (1 - t) x_0 + t noise, t = 1 is pure noise, t = 0 is data; the model predicts the
velocity v = noise - x_0, and one step is x <- x + (t_next - t) v. The step sizes are exported in the
package manifest so apps need nothing beyond `x += dt * v`.

DDIM keeps that contract: its UNet input is t = tau / 1000 (tau the DDPM timestep, which the UNet's
embedding scales back by 1000) and `velocity_model` wraps the UNet so that it returns the velocity
v = ((A - 1) x + B out) / dt, where x_prev = A x + B out is DDIM's update for the step's epsilon or
v-prediction `out`. x + dt * v is then exactly that update, in eager PyTorch and in exported programs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import SchedulerConfig
from .contract import names as contract_names
from .errors import ConfigError


@dataclass
class SchedulerOutput:
    prev_sample: torch.Tensor


class RectifiedFlowScheduler:
    def __init__(self, config: SchedulerConfig | None = None):
        self.config = config or SchedulerConfig()
        self.sigmas: list[float] = []
        self.set_timesteps(self.config.num_inference_steps)

    def set_timesteps(self, num_inference_steps: int, timesteps: list[float] | None = None) -> None:
        """Uniform (optionally shifted) steps from t=1 to 0, or explicit descending `timesteps` in (0, 1].

        A config with fixed timesteps (a distilled model) uses them when `num_inference_steps` matches.
        """
        if num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        fixed = timesteps if timesteps is not None else list(self.config.timesteps)
        if fixed and len(fixed) == num_inference_steps:
            ts = [float(t) for t in fixed]
            if any(not 0.0 < t <= 1.0 for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
                raise ConfigError(f"timesteps must be strictly descending values in (0, 1], got {ts}")
        elif timesteps is not None:
            raise ConfigError(f"got {len(timesteps)} timesteps for num_inference_steps={num_inference_steps}")
        else:
            s = self.config.shift
            uniform = [1.0 - i / num_inference_steps for i in range(num_inference_steps)]
            ts = [s * t / (1.0 + (s - 1.0) * t) for t in uniform]
        self.sigmas = ts + [0.0]

    @property
    def timesteps(self) -> list[float]:
        return self.sigmas[:-1]

    @property
    def step_sizes(self) -> list[float]:
        """dt of each step (negative: t decreases)."""
        return [b - a for a, b in zip(self.sigmas, self.sigmas[1:])]

    def _index(self, timestep: float | torch.Tensor) -> int:
        t = float(timestep)
        for i, s in enumerate(self.timesteps):
            if abs(s - t) < 1e-6:
                return i
        raise ConfigError(f"timestep {t} is not one of the scheduler's timesteps {self.timesteps}")

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor, sample: torch.Tensor) -> SchedulerOutput:
        i = self._index(timestep)
        return SchedulerOutput(prev_sample=sample + self.step_sizes[i] * model_output)

    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t for training; t has shape [B] and broadcasts over the other dims."""
        t = _per_sample(t, x0)
        return (1.0 - t) * x0 + t * noise

    @staticmethod
    def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The training target."""
        return noise - x0

    # ---- training: what the model's output means (trainers call these, whatever the schedule) ----
    def sample_training_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training times, as the UNet sees them."""
        return torch.rand(n, generator=generator)

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.velocity(x0, noise)

    def predict_x0(self, xt: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean latents implied by the model's output `out` at x_t."""
        return xt - _per_sample(t, xt) * out

    def velocity_model(self, unet):
        """What the pipeline calls for the velocity: the UNet itself (it predicts the velocity)."""
        return unet

    def to_dict(self) -> dict:
        return {"type": contract_names()["scheduler"]["type"], "timesteps": self.timesteps, "step_sizes": self.step_sizes}


class DDIMScheduler(RectifiedFlowScheduler):
    """Deterministic DDIM (eta = 0) as diffusers' DDIMScheduler computes it, expressed as Euler steps."""

    def set_timesteps(self, num_inference_steps: int, timesteps: list[float] | None = None) -> None:
        if num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if timesteps is not None:
            raise ConfigError("a DDIM scheduler derives its timesteps from the noise schedule; none can be given")
        cfg = self.config
        taus = ddim_timesteps(cfg, num_inference_steps)
        if taus[-1] <= 0 or taus[0] > 1000:
            raise ConfigError(f"DDIM timesteps {taus[0]}..{taus[-1]} must lie in 1..1000 (the UNet input is tau / 1000)")
        alphas = alphas_cumprod(cfg)
        self.train_alphas = torch.from_numpy(alphas)  # by DDPM timestep, for training
        final = 1.0 if cfg.set_alpha_to_one else alphas[0]
        ratio = cfg.num_train_timesteps // num_inference_steps
        self.sigmas = [tau / 1000.0 for tau in taus] + [0.0]
        coefficients = []
        for i, tau in enumerate(taus):
            prev = tau - ratio  # diffusers' previous timestep, whatever the spacing
            a, a_prev = alphas[tau], (alphas[prev] if prev >= 0 else final)
            if cfg.prediction_type == "epsilon":
                scale_x = math.sqrt(a_prev / a)
                scale_out = math.sqrt(1 - a_prev) - math.sqrt(a_prev * (1 - a) / a)
            else:  # v_prediction
                scale_x = math.sqrt(a_prev * a) + math.sqrt((1 - a_prev) * (1 - a))
                scale_out = math.sqrt((1 - a_prev) * a) - math.sqrt(a_prev * (1 - a))
            dt = self.sigmas[i + 1] - self.sigmas[i]
            coefficients.append(((scale_x - 1.0) / dt, scale_out / dt))
        self.coefficients = torch.tensor(coefficients, dtype=torch.float32)

    # ---- training on the DDPM schedule: t = tau / 1000, as the UNet's input (tau = 0 .. N - 1) ----
    def _alpha(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        tau = (t.to(torch.float64) * 1000.0).round().long().clamp(0, len(self.train_alphas) - 1)
        return _per_sample(self.train_alphas[tau.cpu()].to(like.device, like.dtype), like)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self._alpha(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def sample_training_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(self.config.num_train_timesteps, (n,), generator=generator).float() / 1000.0

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.prediction_type == "epsilon":
            return noise
        a = self._alpha(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def predict_x0(self, xt: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self._alpha(t, xt)
        if self.config.prediction_type == "epsilon":
            return (xt - (1 - a).sqrt() * out) / a.sqrt()
        return a.sqrt() * xt - (1 - a).sqrt() * out

    def velocity_model(self, unet) -> nn.Module:
        return DDIMVelocity(unet, torch.tensor(self.timesteps, dtype=torch.float32), self.coefficients)

    def to_dict(self) -> dict:
        c = self.config
        source = {"type": "ddim", "prediction_type": c.prediction_type, "num_train_timesteps": c.num_train_timesteps,
                  "beta_schedule": c.beta_schedule, "beta_start": c.beta_start, "beta_end": c.beta_end,
                  "timestep_spacing": c.timestep_spacing, "steps_offset": c.steps_offset,
                  "set_alpha_to_one": c.set_alpha_to_one,
                  "unet": "the UNet programs return x_prev - x over dt (DDIM's update), with timestep = tau / 1000"}
        return {**super().to_dict(), "source": source}


class DDIMVelocity(nn.Module):
    """A DDIM UNet as a velocity model: v = c0 x + c1 unet(x, t, text), (c0, c1) those of the step whose
    timestep is nearest t (a one-hot of a few elements; everything else stays in the UNet's delegate)."""

    def __init__(self, unet: nn.Module, timesteps: torch.Tensor, coefficients: torch.Tensor):
        super().__init__()
        self.unet = unet
        self.register_buffer("step_t", timesteps, persistent=False)
        self.register_buffer("coefficients", coefficients, persistent=False)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        distance = (timestep.reshape(-1, 1) - self.step_t.reshape(1, -1)).abs()
        nearest = (distance == distance.amin(dim=1, keepdim=True)).to(sample.dtype)
        c = nearest @ self.coefficients  # [B, 2]
        out = self.unet(sample, timestep, encoder_hidden_states)
        b = sample.shape[0]
        return c[:, 0].reshape(b, 1, 1, 1, 1) * sample + c[:, 1].reshape(b, 1, 1, 1, 1) * out


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ...] broadcasting over `like`'s other dims."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def alphas_cumprod(cfg: SchedulerConfig) -> np.ndarray:
    """The DDPM noise schedule's cumulative alphas (float64), as diffusers builds them."""
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "scaled_linear":
        betas = np.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=np.float32) ** 2
    else:
        betas = np.linspace(cfg.beta_start, cfg.beta_end, n, dtype=np.float32)
    return np.cumprod(1.0 - betas.astype(np.float64))


def ddim_timesteps(cfg: SchedulerConfig, steps: int) -> list[int]:
    """Descending DDPM timesteps of a sampling run, by diffusers' timestep_spacing rules."""
    n = cfg.num_train_timesteps
    if cfg.timestep_spacing == "leading":
        taus = (np.arange(0, steps) * (n // steps)).round()[::-1] + cfg.steps_offset
    elif cfg.timestep_spacing == "trailing":
        taus = np.round(np.arange(n, 0, -n / steps)) - 1
    else:
        taus = np.linspace(0, n - 1, steps).round()[::-1]
    return [int(t) for t in taus]


def make_scheduler(config: SchedulerConfig) -> RectifiedFlowScheduler:
    return DDIMScheduler(config) if config.type == "ddim" else RectifiedFlowScheduler(config)
