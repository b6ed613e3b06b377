"""The one resumable training loop every trainer runs, and the checkpoint format it resumes from.

A trainer builds its modules and optimizers, hands `TrainLoop` a per-step function, and gets back the
loss history. The loop owns what must be identical across trainers for resume to be exact: the
per-step generator, the learning-rate schedule, periodic and final checkpoints, the wall-clock timer.
Under torchrun (export.train.distributed) every rank runs the same loop: the step's generator is the
same on all ranks (each takes its slice of the global batch), the logged losses are global means, and
only rank 0 writes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from mobile_sdk.atomic import atomic_dir
from mobile_sdk.errors import SDKError

from export.train.distributed import global_mean, rank_and_world

CHECKPOINT = "checkpoint"


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
    """Resumable training state in `run_dir/checkpoint/`: safetensors for tensors, JSON for the rest.
    Rank 0 alone writes it (data-parallel ranks hold the same state); export.train.fsdp has the sharded one."""

    collective = False

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
            if "format" in meta:
                raise SDKError(f"{self.dir}: this checkpoint is sharded ({meta['format']}); resume it with --fsdp")
            tensors = load_file(str(self.dir / "state.safetensors"))
        except SDKError:
            raise
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


StepFn = Callable[[int, torch.Generator], dict[str, float]]


class TrainLoop:
    """Steps `[resumed step, steps)` of one training run; constructing it resumes from `run_dir`'s checkpoint.

    Each step gets a generator seeded from (seed, step) alone, the same on every rank, and the learning
    rates of `lr` (optimizer name -> (base rate, warm-up steps) of `lr_at`) are set from the step alone, so
    a resumed run retraces an uninterrupted one. `step_fn(step, generator)` does the work and returns the
    step's losses, one per name in `losses`. `run_dir=None` trains without checkpoints; `checkpointer`
    replaces `Checkpointer(run_dir)` (FSDP's sharded one). `extra` holds defaults for further JSON state
    the trainer keeps in `state` (resumed with it).
    """

    def __init__(self, run_dir: str | Path | None, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], losses: tuple[str, ...], *, steps: int,
                 lr: dict[str, tuple[float, int]], seed: int, checkpoint_every: int = 0, desc: str = "train",
                 progress: bool = True, extra: dict | None = None, checkpointer=None):
        self.modules, self.optimizers, self.steps, self.lr, self.seed = modules, optimizers, steps, lr, seed
        self.checkpoint_every, self.desc = checkpoint_every, desc
        self.is_main = rank_and_world()[0] == 0
        self.progress = progress and self.is_main
        self.ckpt = checkpointer or (Checkpointer(run_dir) if run_dir is not None else None)
        resumed = self.ckpt.load(modules, optimizers) if self.ckpt else None
        self.state = resumed or {"step": 0, "seconds": 0.0, "history": {k: [] for k in losses}, **(extra or {})}
        self.timer: Timer | None = None

    @property
    def history(self) -> dict[str, list[float]]:
        return self.state["history"]

    @property
    def seconds(self) -> float:
        """Training time over all sessions; set-up before `run` is not counted."""
        return self.timer.seconds if self.timer else self.state["seconds"]

    def generator(self, step: int) -> torch.Generator:
        """seed + step on every rank: draws are made for the global batch and each rank takes its shard."""
        return torch.Generator().manual_seed(self.seed + step)

    def run(self, step_fn: StepFn) -> dict[str, list[float]]:
        """Train to `steps`, checkpointing every `checkpoint_every` steps and at the end; returns the history."""
        self.timer = Timer(self.state["seconds"])
        start = self.state["step"]
        bar = tqdm(range(start, self.steps), initial=start, total=self.steps, desc=self.desc, disable=not self.progress)
        for step in bar:
            g = self.generator(step)
            for name, (base, warmup) in self.lr.items():
                for group in self.optimizers[name].param_groups:
                    group["lr"] = lr_at(step, base, warmup, self.steps)
            losses = global_mean(step_fn(step, g))
            for name, value in losses.items():
                self.history[name].append(float(value))
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
            if (self.checkpoint_every and (step + 1) % self.checkpoint_every == 0) or step + 1 == self.steps:
                self.state.update(step=step + 1, seconds=self.timer.seconds)
                self._save()
        return self.history

    def _save(self) -> None:
        if self.ckpt is None:
            return
        if self.is_main or self.ckpt.collective:
            self.ckpt.save(self.modules, self.optimizers, self.state)

    def save_loss_curve(self, path: Path, title: str) -> None:
        """The history, smoothed, on a log scale (rank 0 only)."""
        if not self.is_main:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for name, values in self.history.items():
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
