"""Rectified-flow (flow-matching) Euler scheduler.

Convention: x_t = (1 - t) x_0 + t noise, t = 1 is pure noise, t = 0 is data; the model predicts the
velocity v = noise - x_0, and one step is x <- x + (t_next - t) v. The step sizes are exported in the
package manifest so apps need nothing beyond `x += dt * v`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import SchedulerConfig
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
        t = t.reshape(-1, *([1] * (x0.dim() - 1)))
        return (1.0 - t) * x0 + t * noise

    @staticmethod
    def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The training target."""
        return noise - x0

    def to_dict(self) -> dict:
        return {"type": "rectified_flow_euler", "timesteps": self.timesteps, "step_sizes": self.step_sizes}
