"""Training the supernet (SNED): frozen backbone, rectified-flow loss, one sampled plan per iteration.

Plans are sampled by **dynamic cost sampling**: first a cost bucket (equal-width buckets between the
cheapest and the most expensive plan), then a plan inside it, so cheap and expensive sub-networks are
trained alike (uniform sampling over ops would almost never draw the cheap or the expensive end).
With the **sampling warm-up**, the largest plan dominates early: it is drawn with probability
1 - step / warmup_steps, and the buckets open from the most expensive down over the same steps.

Cost = the temporal layers' FLOPs (device-independent, so one supernet serves every latency table).
Timesteps are the base model's few-step schedule, where its sub-networks will run.

Under torchrun every rank draws its own plan each step (rank r's draw at step k comes from a
generator seeded by (seed, k, r), so the sampler's state is the step: a resumed run, at any world
size, draws what an uninterrupted one would), trains it on its shard of the global batch, and the
candidates' gradients are averaged over ranks (`average_gradients`): W sub-networks per update.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mobile_sdk.errors import SDKError
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.plan import TEMPORAL_OPS
from mobile_sdk.scheduler import RectifiedFlowScheduler

from export.nas.model_blocks import ModelBlocks, model_blocks
from export.nas.supernet import SupernetUNet
from export.train.distributed import (all_gather_ints, average_gradients, barrier, broadcast_params, device,
                                      per_rank_batch, rank_and_world, shard)
from export.train.loop import TrainLoop
from export.train.teacher import latent_pool


@dataclass
class SupernetTrainConfig:
    steps: int = 1500
    batch_size: int = 8  # global: split over the ranks of a torchrun launch
    lr: float = 3e-4
    lr_warmup: int = 50
    warmup_steps: int = 300  # sampling warm-up
    buckets: int = 5
    pool_clips: int = 1024
    held_out_clips: int = 16
    seed: int = 0
    checkpoint_every: int = 100


def temporal_flops(blocks: ModelBlocks) -> np.ndarray:
    """[S, len(TEMPORAL_OPS)] FLOPs of each op in each slot ("none" = 0), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    cost = np.zeros((len(blocks.slots), len(TEMPORAL_OPS)))
    cache: dict[str, float] = {}
    for i, slot in enumerate(blocks.slots):
        for op, sig in blocks.temporal[slot].items():
            if sig not in cache:
                block = blocks.blocks[sig]
                counter = FlopCounterMode(display=False)
                with torch.no_grad(), counter:
                    block.make_meta_module()(*block.inputs_meta)
                cache[sig] = float(counter.get_total_flops())
            cost[i, TEMPORAL_OPS.index(op)] = cache[sig]
    return cost


class DynamicCostSampler:
    """Plans by cost bucket. The pools come from `seed` alone (the same on every rank); each draw
    takes the generator it uses, so callers decide whose stream it is."""

    def __init__(self, cost: np.ndarray, buckets: int, warmup_steps: int, seed: int, pool: int = 8192):
        self.cost, self.k, self.warmup = cost, buckets, warmup_steps
        self.rng = np.random.default_rng(seed)
        s, n_ops = cost.shape
        self.largest = cost.argmax(1).astype(np.int8)
        top = float(cost[np.arange(s), self.largest].sum())
        # A pool spread over all costs: each plan keeps each slot with its own random density.
        density = self.rng.random((pool, 1))
        keep = self.rng.random((pool, s)) < density
        codes = np.where(keep, self.rng.integers(1, n_ops, (pool, s)), 0).astype(np.int8)
        costs = cost[np.arange(s), codes].sum(1)
        self.edges = np.linspace(0.0, top, buckets + 1)
        which = np.clip(np.searchsorted(self.edges, costs, side="right") - 1, 0, buckets - 1)
        self.pools = [codes[which == b] for b in range(buckets)]
        for b, p in enumerate(self.pools):
            if len(p) == 0:  # a few expensive slots can leave gaps in the cost range: aim at the bucket
                self.pools[b] = self._aim(b)

    def _aim(self, b: int, want: int = 64, tries: int = 4000) -> np.ndarray:
        """Plans in bucket b, made by dropping random ops from the largest plan until the cost fits;
        if the bucket holds no plan at all (cost jumps over it), the nearest bucket's plans stand in."""
        s = len(self.largest)
        found = []
        for _ in range(tries):
            plan = self.largest.copy()
            while (c := self.cost[np.arange(s), plan].sum()) >= self.edges[b + 1] and plan.any():
                plan[self.rng.choice(np.flatnonzero(plan))] = 0
            if self.edges[b] <= c < self.edges[b + 1] or (b == self.k - 1 and c >= self.edges[b]):
                found.append(plan)
                if len(found) == want:
                    break
        if found:
            return np.unique(np.stack(found), axis=0)
        filled = [i for i, p in enumerate(self.pools) if len(p)]
        return self.pools[min(filled, key=lambda i: abs(i - b))]

    def p_largest(self, step: int) -> float:
        return max(0.0, 1.0 - step / self.warmup) if self.warmup else 0.0

    def open_buckets(self, step: int) -> int:
        return self.k if step >= self.warmup else max(1, math.ceil(self.k * (step + 1) / self.warmup))

    def sample(self, step: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """(plan codes, bucket); bucket -1 means the largest plan."""
        if rng.random() < self.p_largest(step):
            return self.largest.copy(), -1
        b = int(rng.integers(self.k - self.open_buckets(step), self.k))
        pool = self.pools[b]
        return pool[rng.integers(len(pool))].copy(), b


def supernet_pool(pipe: VideoPipeline, directory: Path, pool_clips: int, held_out: int, seed: int,
                  progress: bool = True) -> tuple[tuple[torch.Tensor, list[str]], tuple[torch.Tensor, list[str]]]:
    """((training latents, prompts), (held-out latents, prompts)): the first `held_out` clips of one
    cached pool are never trained on. Training, evaluation and the rank check all read this split."""
    pool, prompts = latent_pool(pipe.vae_decoder.vae, pipe.config, pool_clips + held_out, seed + 7,
                                Path(directory) / "latent_pool.safetensors", progress)
    return (pool[held_out:], prompts[held_out:]), (pool[:held_out], prompts[:held_out])


def rf_loss(net, pool: torch.Tensor, prompts: list[str], text_encoder, tokenizer, timesteps: torch.Tensor,
            batch_size: int, g: torch.Generator) -> torch.Tensor:
    """Rectified-flow loss of the net's active plan on a random batch of the latent pool (drawn for
    the global batch `batch_size`, this rank's shard of it under torchrun)."""
    idx = torch.randint(len(pool), (batch_size,), generator=g)
    noise = torch.randn((batch_size, *pool.shape[1:]), generator=g)
    t = timesteps[torch.randint(len(timesteps), (batch_size,), generator=g)]
    dev = next(text_encoder.parameters()).device
    idx, noise, t = shard(idx), shard(noise).to(dev), shard(t).to(dev)
    x0 = pool[idx].to(dev)
    with torch.no_grad():
        hidden, _ = text_encoder(tokenizer([prompts[i] for i in idx.tolist()]).to(dev))
    xt = RectifiedFlowScheduler.add_noise(x0, noise, t)
    return torch.mean((net(xt, t, hidden) - RectifiedFlowScheduler.velocity(x0, noise)) ** 2)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params: list) -> None:
    """One update from this rank's loss and, under torchrun, the other ranks' (gradients averaged)."""
    opt.zero_grad(set_to_none=True)
    if loss.requires_grad:  # the all-"none" plan has nothing to train (its rank still joins the average)
        loss.backward()
    average_gradients(params)
    if any(p.grad is not None for p in params):
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()


def train_supernet(base_model: str | Path, out_dir: str | Path, cfg: SupernetTrainConfig, progress: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = VideoPipeline.from_pretrained(base_model)
    net = SupernetUNet.from_unet(pipe.unet).to(device())
    for p in net.backbone_parameters():
        p.requires_grad_(False)
    text_encoder = pipe.text_encoder.requires_grad_(False).to(device())
    blocks = model_blocks(pipe.config)
    sampler = DynamicCostSampler(temporal_flops(blocks), cfg.buckets, cfg.warmup_steps, cfg.seed)
    params = list(net.candidates.parameters())
    broadcast_params(params)  # identical already (from the base model); made certain, as DDP does
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out, {"candidates": net.candidates}, {"opt": opt}, ("loss",), steps=cfg.steps,
                     lr={"opt": (cfg.lr, cfg.lr_warmup)}, seed=cfg.seed * 1_000_003,
                     checkpoint_every=cfg.checkpoint_every, desc="supernet", progress=progress,
                     extra={"buckets": []})
    if not all(isinstance(b, list) for b in loop.state["buckets"]):
        raise SDKError(f"{out / 'checkpoint'}: written by an older version (one draw per step); delete it to start over")
    rank = rank_and_world()[0]
    per_rank_batch(cfg.batch_size, "--batch-size")
    (train_pool, train_prompts), _ = supernet_pool(pipe, out, cfg.pool_clips, cfg.held_out_clips, cfg.seed, progress)
    timesteps = torch.tensor(pipe.scheduler.timesteps)
    tokenizer = pipe.tokenizer

    def step(k: int, g: torch.Generator) -> dict[str, float]:
        codes, bucket = sampler.sample(k, np.random.default_rng([cfg.seed, k, rank]))
        net.set_plan(codes)
        loss = rf_loss(net, train_pool, train_prompts, text_encoder, tokenizer, timesteps, cfg.batch_size, g)
        optimizer_step(loss, opt, params)
        loop.state["buckets"].append(all_gather_ints(bucket))  # every rank's draw of this step
        return {"loss": loss.item()}

    net.train()
    loop.run(step)

    buckets = loop.state["buckets"]
    drawn = [b for per_step in buckets for b in per_step]
    counts = {str(b): drawn.count(b) for b in range(-1, cfg.buckets)}
    report = {"steps": cfg.steps, "world_size": rank_and_world()[1], "train_seconds": round(loop.seconds, 1),
              "config": asdict(cfg), "bucket_edges_flops": sampler.edges.tolist(), "samples_per_bucket": counts,
              "final_loss": float(np.mean(loop.history["loss"][-100:]))}
    if loop.is_main:
        net.save(out, {"format": "mobile-sdk-supernet", "version": 1, "base_model": str(Path(base_model).resolve()),
                       "preset": pipe.config.name, "timesteps": timesteps.tolist(), "held_out_clips": cfg.held_out_clips,
                       "seed": cfg.seed, "training": report})
        loop.save_loss_curve(out / "loss.png", "supernet (rectified flow, sampled plans)")
        _bucket_plot(buckets, cfg, out / "sampling.png")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    barrier()
    return report


def _bucket_plot(buckets: list[list[int]], cfg: SupernetTrainConfig, path: Path) -> None:
    """Every rank's draw at every step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [k for k, per_step in enumerate(buckets) for _ in per_step]
    b = [x for per_step in buckets for x in per_step]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.scatter(steps, b, s=2, alpha=0.4)
    ax.axvline(cfg.warmup_steps, color="k", ls="--", lw=1, label="end of sampling warm-up")
    ax.set(xlabel="step", ylabel="cost bucket (-1 = largest plan)", title="supernet plan sampling")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
