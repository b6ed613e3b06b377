"""Shared training plumbing: batches from the synthetic data, resumable checkpoints, EMA, loss curves."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mobile_sdk.atomic import atomic_dir
from mobile_sdk.data.synthetic import SyntheticVideos
from mobile_sdk.errors import SDKError

CHECKPOINT = "checkpoint"


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


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            key = f"{prefix}.{idx}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.contiguous()
            else:
                scalars[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        p, idx, name = key.split(".", 2)
        if p == prefix:
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpointer:
    """Resumable training state in `run_dir/checkpoint/`: safetensors for tensors, JSON for the rest."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir) / CHECKPOINT

    def save(self, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], state: dict) -> None:
        tensors: dict[str, torch.Tensor] = {}
        opt_meta = {}
        for name, m in modules.items():
            tensors.update({f"{name}/{k}": v.detach().contiguous() for k, v in m.state_dict().items()})
        for name, opt in optimizers.items():
            t, meta = _flatten_optimizer(opt, name)
            tensors.update({f"optim/{k}": v for k, v in t.items()})
            opt_meta[name] = meta
        with atomic_dir(self.dir) as tmp:
            save_file(tensors, str(tmp / "state.safetensors"))
            (tmp / "state.json").write_text(json.dumps({"state": state, "optimizers": opt_meta}))

    def load(self, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> dict | None:
        if not (self.dir / "state.json").is_file():
            return None
        try:
            meta = json.loads((self.dir / "state.json").read_text())
            tensors = load_file(str(self.dir / "state.safetensors"))
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
            raise SDKError(f"{self.dir}: cannot resume from this checkpoint ({e}); delete it to start over") from None
        for name, m in modules.items():
            prefix = f"{name}/"
            m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in optimizers.items():
            opt_t = {k[len("optim/"):]: v for k, v in tensors.items() if k.startswith("optim/")}
            _restore_optimizer(opt, name, opt_t, meta["optimizers"][name])
        return meta["state"]


class Timer:
    """Wall-clock training time that survives resumes (stored in the checkpoint state)."""

    def __init__(self, already: float = 0.0):
        self.start, self.already = time.perf_counter(), already

    @property
    def seconds(self) -> float:
        return self.already + time.perf_counter() - self.start


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 10 % of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))


def save_loss_curve(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in history.items():
        if not values:
            continue
        v = np.asarray(values)
        k = max(1, len(v) // 50)
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k - 1, smooth, label=name)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
