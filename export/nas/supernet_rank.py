"""Does the supernet rank sub-networks like sub-networks trained on their own? (the assumption SNED rests on)

A handful of sub-networks, one per cost bucket, are each trained alone (same data, same loss, a fixed
budget of steps) and evaluated with the same held-out protocol as the supernet. For a temporal supernet
they are plans, trained alone as today's supernet trains them (their candidates on the frozen backbone).
For a supernet trained over width and depth too (`backbone_trained`), they are (plan, SubNet) pairs of
the whole space, each *extracted* (an ordinary smaller UNet with the supernet's weights) and fine-tuned
whole by the short fine-tune an extracted sub-network gets before it ships (export.nas.finetune); all at
the model's own size.
Reported: both losses per sub-network, and Kendall's tau and Spearman's rho between the two rankings.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mobile_sdk.atomic import atomic_file
from mobile_sdk.plan import TemporalPlan

from export.nas.supernet import SupernetUNet, load_supernet
from export.nas.accuracy_predictor import SupernetEvaluator
from export.nas.finetune import finetune_extracted
from export.nas.supernet_train import (DynamicCostSampler, elastic_space, optimizer_step, rf_loss, supernet_config,
                                       supernet_pool, temporal_flops, trained_base_weight)
from export.nas.model_blocks import model_blocks
from export.train.loop import TrainLoop


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def kendall_tau(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    n, s = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s / (n * (n - 1) / 2))


def spearman_rho(a, b) -> float:
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_check(supernet_dir: str | Path, out_dir: str | Path, n_plans: int = 5, steps: int = 300, seed: int = 0,
               progress: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net, pipe, meta = load_supernet(supernet_dir)
    cfg = meta["training"]["config"]
    evaluator = SupernetEvaluator.from_loaded(net, pipe, meta, supernet_dir, progress)
    blocks = model_blocks(pipe.config)
    if meta.get("backbone_trained"):
        return _rank_subnets(net, pipe, meta, evaluator, blocks, Path(supernet_dir), out, n_plans, steps, seed, progress)
    base_weight = trained_base_weight(meta)
    sampler = DynamicCostSampler(temporal_flops(blocks), n_plans, 0, seed)
    plans = [sampler.pools[b][np.random.default_rng(seed + b).integers(len(sampler.pools[b]))] for b in range(n_plans)]
    (train_pool, train_prompts), _ = supernet_pool(pipe, Path(supernet_dir), cfg["pool_clips"], meta["held_out_clips"],
                                                   meta["seed"], progress)
    timesteps = torch.tensor(meta["timesteps"])
    rows = []
    for k, codes in enumerate(tqdm(plans, desc="training plans alone", disable=not progress)):
        alone = SupernetUNet.from_unet(pipe.unet)  # same initialisation as the supernet's candidates
        alone.set_plan(codes)
        params = [p for n, p in alone.candidates.named_parameters()]
        for p in alone.backbone_parameters():
            p.requires_grad_(False)
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
        loop = TrainLoop(None, {"alone": alone}, {"opt": opt}, ("loss",), steps=steps,
                         lr={"opt": (cfg["lr"], cfg["lr_warmup"])}, seed=seed * 7919 + k * 100_003, progress=False)

        def step(i: int, g: torch.Generator) -> dict[str, float]:
            loss = rf_loss(alone, train_pool, train_prompts, pipe.text_encoder, pipe.tokenizer, timesteps,
                           cfg["batch_size"], g, pipe.unet, base_weight)
            optimizer_step(loss, opt, params)
            return {"loss": loss.item()}

        alone.train()
        loop.run(step)
        alone_eval = SupernetEvaluator(alone, evaluator.hidden, evaluator.latents, evaluator.timesteps, seed=meta["seed"],
                                       base=pipe.unet, base_weight=base_weight)
        rows.append({"plan": TemporalPlan.from_codes(blocks.slots, codes).to_dict(),
                     "cost_bucket": k, "supernet_loss": evaluator.loss(codes), "standalone_loss": alone_eval.loss(codes)})
    sup = [r["supernet_loss"] for r in rows]
    alone = [r["standalone_loss"] for r in rows]
    report = {"plans": len(rows), "standalone_steps": steps, "supernet_steps": meta["training"]["steps"],
              "kendall_tau": kendall_tau(sup, alone), "spearman_rho": spearman_rho(sup, alone), "rows": rows}
    return _write(report, out)


def _write(report: dict, out: Path) -> dict:
    with atomic_file(out / "rank.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    _plot(report["rows"], report, out / "rank.png")
    return report


class _Fixed:
    """One fixed sub-network as SupernetEvaluator sees a supernet: `set_plan` has nothing to choose."""

    def __init__(self, forward):
        self.forward = forward

    def eval(self) -> "_Fixed":
        return self

    def set_plan(self, codes) -> None:
        pass

    def __call__(self, *args) -> torch.Tensor:
        return self.forward(*args)


def _rank_subnets(net: SupernetUNet, pipe, meta: dict, evaluator: SupernetEvaluator, blocks, directory: Path, out: Path,
                  n: int, steps: int, seed: int, progress: bool) -> dict:
    """The whole-space rank check: shared-weight loss vs the loss of the extracted, fine-tuned sub-network."""
    cfg = supernet_config(meta)
    space = elastic_space(pipe, cfg.space, blocks)
    sampler = DynamicCostSampler(space, n, 0, seed)
    picks = [sampler.pools[b][np.random.default_rng(seed + b).integers(len(sampler.pools[b]))] for b in range(n)]
    (train_pool, train_prompts), _ = supernet_pool(pipe, directory, cfg.pool_clips, meta["held_out_clips"], meta["seed"],
                                                   progress)
    timesteps = torch.tensor(meta["timesteps"])

    def loss_of(forward) -> float:
        return SupernetEvaluator(_Fixed(forward), evaluator.hidden, evaluator.latents, evaluator.timesteps,
                                 seed=meta["seed"], base=pipe.unet, base_weight=cfg.base_target_weight
                                 ).loss(np.zeros(len(net.slots), np.int8))

    rows = []
    for k, vector in enumerate(tqdm(picks, desc="fine-tuning extracted sub-networks", disable=not progress)):
        codes, subnet = space.decode(vector)
        shared = loss_of(lambda x, t, h: net.forward_subnet(codes, subnet, x, t, h))
        alone = net.extract_subnet(codes, subnet)
        finetune_extracted(alone, pipe.unet, train_pool, train_prompts, pipe.text_encoder, pipe.tokenizer, timesteps,
                           cfg, steps, seed * 7919 + k * 100_003)
        rows.append({"plan": TemporalPlan.from_codes(blocks.slots, codes).to_dict(), "subnet": subnet.to_dict(),
                     "flops": float(space.cost_of(vector)), "cost_bucket": k, "supernet_loss": shared,
                     "standalone_loss": loss_of(alone)})
    sup = [r["supernet_loss"] for r in rows]
    fine = [r["standalone_loss"] for r in rows]
    report = {"space": list(cfg.space), "subnets": len(rows), "plans": len(rows), "standalone_steps": steps,
              "standalone": "extracted, fine-tuned whole", "supernet_steps": meta["training"]["steps"],
              "kendall_tau": kendall_tau(sup, fine), "spearman_rho": spearman_rho(sup, fine), "rows": rows}
    return _write(report, out)


def _plot(rows: list[dict], report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    x = [r["standalone_loss"] for r in rows]
    y = [r["supernet_loss"] for r in rows]
    ax.scatter(x, y)
    for r, xi, yi in zip(rows, x, y):
        ax.annotate(f"bucket {r['cost_bucket']}", (xi, yi), fontsize=7)
    ax.set(xlabel="validation loss, trained alone", ylabel="validation loss, supernet weights",
           title=f"Kendall tau {report['kendall_tau']:.2f}, Spearman rho {report['spearman_rho']:.2f}")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
