"""Training the supernet (SNED, with DDSM's sandwich rule over sizes): rectified-flow loss, sampled sub-networks.

Sub-networks are sampled by **dynamic cost sampling**: first a cost bucket (equal-width buckets between
the cheapest and the most expensive sub-network), then a sub-network inside it, so cheap and expensive
sub-networks are trained alike (uniform sampling over choices would almost never draw the cheap or the
expensive end). With the **sampling warm-up**, the largest dominates early: it is drawn with probability
1 - step / warmup_steps, and the buckets open from the most expensive down over the same steps.

The space (`space`, export.nas.sampling_space.AXES) decides the rest:

- **temporal** alone (the default): the backbone is frozen and each iteration trains one sampled plan's
  temporal candidates. Cost = the temporal layers' FLOPs. The target is the same as below.
- with **width** / **depth** / **resolution**: a sub-network is (plan, SubNet) and each iteration is a
  *sandwich* (slimmable networks, DDSM): the largest sub-network on the data loss, the smallest and
  `random_per_step` sub-networks drawn by the same sampler, over the whole space's cost (FLOPs of
  plan + SubNet), on the data loss mixed with **in-place distillation** from the largest one's detached
  prediction (weight `distill_weight`), all on the same batch; gradients summed, one update. The latent
  resolution is drawn per iteration from `resolutions` (every member of the sandwich shares it, so the
  distillation target fits); each resolution has its own latent pool, the same synthetic clips rendered
  at that size and encoded by the base model's VAE. The backbone trains too, at `backbone_lr_scale`
  times the candidates' rate: a width keeps the first inner channels, and those were trained only
  alongside the others, so they must learn to work alone; a low rate lets them while the full network
  (the teacher, and the sub-network the others are ranked against) stays close to the shipped model.

In both, the "data" target is itself mostly the shipped model's prediction (`base_target_weight`,
`base_target`): the base is distilled to few steps, and the data's velocity alone would undo that.

Cost is FLOPs (device-independent, so one supernet serves every latency table), counted at the base
model's own size. Timesteps are the base model's few-step schedule, where its sub-networks will run.

Under torchrun every rank draws its own sub-networks (and resolution) each step (rank r's draws at step k
come from a generator seeded by (seed, k, r), so the sampler's state is the step: a resumed run, at any
world size, draws what an uninterrupted one would), trains them on its shard of the global batch, and the
gradients are averaged over ranks (`average_gradients`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mobile_sdk.config import ModelConfig
from mobile_sdk.errors import ConfigError, SDKError
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.plan import TEMPORAL_OPS
from mobile_sdk.scheduler import RectifiedFlowScheduler

from export.nas.model_blocks import ModelBlocks, model_blocks
from export.nas.sampling_space import AXES, DEFAULT_SPACE, ElasticSpace, TemporalSpace
from export.nas.supernet import SupernetUNet
from export.train.distributed import (all_gather_ints, average_gradients, barrier, broadcast_params, device,
                                      per_rank_batch, rank_and_world, shard)
from export.train.loop import CHECKPOINT, TrainLoop
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
    space: tuple[str, ...] = DEFAULT_SPACE  # axes of export.nas.sampling_space.AXES
    resolutions: tuple[tuple[int, int], ...] = ()  # (height, width) in pixels; () = default_resolutions
    random_per_step: int = 2  # sandwich: random sub-networks besides the largest and the smallest
    distill_weight: float = 0.5  # sandwich: share of the largest's prediction in the others' target
    base_target_weight: float = 1.0  # sandwich: share of the shipped model's prediction in the data target
    backbone_lr_scale: float = 0.1  # sandwich: the backbone's learning rate relative to `lr`

    @property
    def elastic(self) -> bool:
        return tuple(self.space) != DEFAULT_SPACE

    def validate(self, model: ModelConfig) -> None:
        """ConfigError naming the option unless this fits the base model."""
        unknown = [a for a in self.space if a not in AXES]
        if unknown or not self.space:
            raise ConfigError(f"--space: unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}" if unknown
                              else f"--space: name at least one axis of {', '.join(AXES)}")
        if self.resolutions and "resolution" not in self.space:
            raise ConfigError("--resolutions: the space has no resolution axis (add it: --space ...,resolution)")
        for h, w in self.resolutions:
            model.check_size(h, w, model.num_frames, "--resolutions")
        for name in ("distill_weight", "base_target_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def default_resolutions(model: ModelConfig) -> tuple[tuple[int, int], ...]:
    """The model's own size and one step of the pixel multiple below and above it (the synthetic data
    renders at any size; the UNet needs multiples of `pixel_multiple`): 32, 64 and 96 for the demo model."""
    m = model.pixel_multiple
    sizes = [(model.height + d * m, model.width + d * m) for d in (-1, 0, 1)]
    return tuple(s for s in sizes if min(s) > 0)


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
    """Sub-networks (vectors of a sampling space; a cost matrix [S, ops] means plans alone) by cost bucket.
    The pools come from `seed` alone (the same on every rank); each draw takes the generator it uses, so
    callers decide whose stream it is."""

    def __init__(self, space: TemporalSpace | ElasticSpace | np.ndarray, buckets: int, warmup_steps: int, seed: int,
                 pool: int = 8192):
        self.space = TemporalSpace(space) if isinstance(space, np.ndarray) else space
        self.k, self.warmup = buckets, warmup_steps
        self.rng = np.random.default_rng(seed)
        self.largest = self.space.largest
        top = float(self.space.cost_of(self.largest))
        codes = self.space.random(self.rng, pool)
        costs = self.space.costs(codes)
        # from the cheapest sub-network (plans alone: 0, all "none"), so no bucket lies below every sub-network
        self.edges = np.linspace(float(self.space.cost_of(self.space.smallest)), top, buckets + 1)
        which = np.clip(np.searchsorted(self.edges, costs, side="right") - 1, 0, buckets - 1)
        self.pools = [codes[which == b] for b in range(buckets)]
        for b, p in enumerate(self.pools):
            if len(p) == 0:  # a few expensive choices can leave gaps in the cost range: aim at the bucket
                self.pools[b] = self._aim(b)

    def _aim(self, b: int, want: int = 64, tries: int = 4000) -> np.ndarray:
        """Sub-networks in bucket b, made by shrinking the largest one at random until the cost fits; if
        the bucket holds none at all (cost jumps over it), the nearest bucket's stand in."""
        found = []
        for _ in range(tries):
            plan = self.largest.copy()
            while (c := self.space.cost_of(plan)) >= self.edges[b + 1] and self.space.shrink(plan, self.rng):
                pass
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
        """(vector, bucket); bucket -1 means the largest sub-network."""
        if rng.random() < self.p_largest(step):
            return self.largest.copy(), -1
        b = int(rng.integers(self.k - self.open_buckets(step), self.k))
        pool = self.pools[b]
        return pool[rng.integers(len(pool))].copy(), b


def elastic_space(pipe: VideoPipeline, space: tuple[str, ...], blocks: ModelBlocks | None = None) -> ElasticSpace:
    """The whole space of `space`'s axes around the base model (its plan where temporal is left out)."""
    cfg = pipe.config
    blocks = blocks or model_blocks(cfg)
    f = cfg.vae.downsample_factor
    return ElasticSpace(cfg.unet, tuple(space), temporal_flops(blocks), np.array(pipe.unet.plan.codes(blocks.slots)),
                        cfg.num_frames, (cfg.height // f, cfg.width // f), cfg.text_encoder.max_length)


def supernet_pool(pipe: VideoPipeline, directory: Path, pool_clips: int, held_out: int, seed: int,
                  progress: bool = True, resolution: tuple[int, int] | None = None
                  ) -> tuple[tuple[torch.Tensor, list[str]], tuple[torch.Tensor, list[str]]]:
    """((training latents, prompts), (held-out latents, prompts)): the first `held_out` clips of one
    cached pool are never trained on. Training, evaluation and the rank check all read this split.
    `resolution` (height, width) other than the model's own: the same clips rendered at that size, in a
    pool of their own."""
    cfg, name = pipe.config, "latent_pool.safetensors"
    if resolution is not None and tuple(resolution) != (cfg.height, cfg.width):
        cfg = dataclasses.replace(cfg, height=resolution[0], width=resolution[1])
        name = f"latent_pool_{resolution[0]}x{resolution[1]}.safetensors"
    pool, prompts = latent_pool(pipe.vae_decoder.vae, cfg, pool_clips + held_out, seed + 7, Path(directory) / name,
                                progress)
    return (pool[held_out:], prompts[held_out:]), (pool[:held_out], prompts[:held_out])


def rf_batch(pool: torch.Tensor, prompts: list[str], text_encoder, tokenizer, timesteps: torch.Tensor,
             batch_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, text embeddings, velocity target) of a random batch of the latent pool
    (drawn for the global batch `batch_size`, this rank's shard of it under torchrun)."""
    idx = torch.randint(len(pool), (batch_size,), generator=g)
    noise = torch.randn((batch_size, *pool.shape[1:]), generator=g)
    t = timesteps[torch.randint(len(timesteps), (batch_size,), generator=g)]
    dev = next(text_encoder.parameters()).device
    idx, noise, t = shard(idx), shard(noise).to(dev), shard(t).to(dev)
    x0 = pool[idx].to(dev)
    with torch.no_grad():
        hidden, _ = text_encoder(tokenizer([prompts[i] for i in idx.tolist()]).to(dev))
    return RectifiedFlowScheduler.add_noise(x0, noise, t), t, hidden, RectifiedFlowScheduler.velocity(x0, noise)


@torch.no_grad()
def base_target(base, xt: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, velocity: torch.Tensor,
                weight: float) -> torch.Tensor:
    """The target a sub-network of a few-step model learns: the data's velocity mixed with the shipped
    model's prediction (`weight`). The shipped model is distilled to its few steps; the data's velocity
    alone is the many-step target, and training on it undoes the distillation (the largest sub-network of
    a supernet trained that way fell from 98 % to 47 % colour+direction accuracy in 2000 steps)."""
    if weight == 0.0:
        return velocity
    return (1 - weight) * velocity + weight * base(xt, t, hidden)


def trained_base_weight(meta: dict) -> float:
    """The supernet's `base_target_weight` (0 for supernets trained before it existed: the data alone)."""
    return float(meta["training"]["config"].get("base_target_weight", 0.0))


def supernet_config(meta: dict) -> "SupernetTrainConfig":
    """The training config a supernet was trained with, as its supernet.json records it."""
    config = meta["training"]["config"]
    return SupernetTrainConfig(**{**config, "space": tuple(config["space"]),
                                  "resolutions": tuple(tuple(r) for r in config.get("resolutions", ())),
                                  "base_target_weight": trained_base_weight(meta)})


def rf_loss(net, pool: torch.Tensor, prompts: list[str], text_encoder, tokenizer, timesteps: torch.Tensor,
            batch_size: int, g: torch.Generator, base, base_weight: float) -> torch.Tensor:
    """Loss of the net's active plan on a random batch of the latent pool (`rf_batch`) against the
    supernet's target (`base_target`)."""
    xt, t, hidden, velocity = rf_batch(pool, prompts, text_encoder, tokenizer, timesteps, batch_size, g)
    return torch.mean((net(xt, t, hidden) - base_target(base, xt, t, hidden, velocity, base_weight)) ** 2)


def apply_gradients(opts: list[torch.optim.Optimizer], params: list) -> None:
    """Average the gradients over ranks (under torchrun), clip them together and step."""
    average_gradients(params)
    if any(p.grad is not None for p in params):
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for opt in opts:
            opt.step()


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params: list) -> None:
    """One update from this rank's loss and, under torchrun, the other ranks' (gradients averaged)."""
    opt.zero_grad(set_to_none=True)
    if loss.requires_grad:  # the all-"none" plan has nothing to train (its rank still joins the average)
        loss.backward()
    apply_gradients([opt], params)


def _check_checkpoint_space(out: Path, cfg: SupernetTrainConfig) -> None:
    """A checkpoint resumes only under the space and resolutions it was trained with."""
    state_file = out / CHECKPOINT / "state.json"
    if not state_file.is_file():
        return
    try:
        state = json.loads(state_file.read_text())["state"]
    except (ValueError, KeyError) as e:
        raise SDKError(f"{state_file}: unreadable checkpoint ({e}); delete it to start over") from None
    was = (list(state.get("space", DEFAULT_SPACE)), state.get("resolutions_set", []))
    now = (list(cfg.space), [list(r) for r in cfg.resolutions])
    if was != now:
        raise SDKError(f"{out / CHECKPOINT}: trained with --space {','.join(was[0])}"
                       + (f" and resolutions {was[1]}" if was[1] else "") + f", not --space {','.join(now[0])}"
                       + (f" and resolutions {now[1]}" if now[1] else "") + "; resume with those or use another --out")


def train_supernet(base_model: str | Path, out_dir: str | Path, cfg: SupernetTrainConfig, progress: bool = True) -> dict:
    out = Path(out_dir)
    pipe = VideoPipeline.from_pretrained(base_model)
    cfg.validate(pipe.config)
    if "resolution" in cfg.space and not cfg.resolutions:
        cfg = dataclasses.replace(cfg, resolutions=default_resolutions(pipe.config))
    _check_checkpoint_space(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    net = SupernetUNet.from_unet(pipe.unet).to(device())
    text_encoder = pipe.text_encoder.requires_grad_(False).to(device())
    blocks = model_blocks(pipe.config)
    rank = rank_and_world()[0]
    per_rank_batch(cfg.batch_size, "--batch-size")
    trainer = (_SandwichTrainer if cfg.elastic else _PlanTrainer)(net, pipe, blocks, cfg, out, progress)
    timesteps = torch.tensor(pipe.scheduler.timesteps)
    tokenizer = pipe.tokenizer
    pools = {}
    for res in cfg.resolutions or [(pipe.config.height, pipe.config.width)]:
        (latents, prompts), _ = supernet_pool(pipe, out, cfg.pool_clips, cfg.held_out_clips, cfg.seed, progress,
                                              tuple(res))
        pools[tuple(res)] = (latents, prompts)

    def batch(res: tuple[int, int], g: torch.Generator):
        latents, prompts = pools[res]
        return rf_batch(latents, prompts, text_encoder, tokenizer, timesteps, cfg.batch_size, g)

    net.train()
    trainer.loop.run(lambda k, g: trainer.step(k, g, rank, batch))

    loop, sampler = trainer.loop, trainer.sampler
    drawn = [b for per_step in loop.state["buckets"] for b in per_step]
    counts = {str(b): drawn.count(b) for b in range(-1, cfg.buckets)}
    report = {"steps": cfg.steps, "world_size": rank_and_world()[1], "train_seconds": round(loop.seconds, 1),
              "config": asdict(cfg), "bucket_edges_flops": sampler.edges.tolist(), "samples_per_bucket": counts,
              "final_loss": float(np.mean(loop.history["loss"][-100:]))}
    if cfg.elastic:
        report["final_losses"] = {k: float(np.mean(v[-100:])) for k, v in loop.history.items()}
        res = [r for per_step in loop.state["resolutions"] for r in per_step]
        report["samples_per_resolution"] = {f"{h}x{w}": res.count(i) for i, (h, w) in enumerate(cfg.resolutions)}
    if loop.is_main:
        meta = {"format": "mobile-sdk-supernet", "version": 1, "base_model": str(Path(base_model).resolve()),
                "preset": pipe.config.name, "timesteps": timesteps.tolist(), "held_out_clips": cfg.held_out_clips,
                "seed": cfg.seed, "training": report}
        if cfg.elastic:
            meta["backbone_trained"] = True
        net.save(out, meta)
        loop.save_loss_curve(out / "loss.png", trainer.title)
        _bucket_plot(loop.state, cfg, out / "sampling.png")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    barrier()
    return report


class _PlanTrainer:
    """Temporal space: frozen backbone, one sampled plan's candidates per iteration."""

    title = "supernet (rectified flow, sampled plans)"

    def __init__(self, net: SupernetUNet, pipe: VideoPipeline, blocks: ModelBlocks, cfg: SupernetTrainConfig,
                 out: Path, progress: bool):
        self.net, self.cfg = net, cfg
        for p in net.backbone_parameters():
            p.requires_grad_(False)
        self.sampler = DynamicCostSampler(temporal_flops(blocks), cfg.buckets, cfg.warmup_steps, cfg.seed)
        self.params = list(net.candidates.parameters())
        broadcast_params(self.params)  # identical already (from the base model); made certain, as DDP does
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.loop = TrainLoop(out, {"candidates": net.candidates}, {"opt": self.opt}, ("loss",), steps=cfg.steps,
                              lr={"opt": (cfg.lr, cfg.lr_warmup)}, seed=cfg.seed * 1_000_003,
                              checkpoint_every=cfg.checkpoint_every, desc="supernet", progress=progress,
                              extra={"buckets": [], "space": list(cfg.space)})
        if not all(isinstance(b, list) for b in self.loop.state["buckets"]):
            raise SDKError(f"{out / 'checkpoint'}: written by an older version (one draw per step); delete it to start over")
        self.native = (pipe.config.height, pipe.config.width)
        self.base = pipe.unet.eval().requires_grad_(False).to(device())  # the shipped model (net holds copies)

    def step(self, k: int, g: torch.Generator, rank: int, batch) -> dict[str, float]:
        codes, bucket = self.sampler.sample(k, np.random.default_rng([self.cfg.seed, k, rank]))
        self.net.set_plan(codes)
        xt, t, hidden, velocity = batch(self.native, g)
        target = base_target(self.base, xt, t, hidden, velocity, self.cfg.base_target_weight)
        loss = torch.mean((self.net(xt, t, hidden) - target) ** 2)
        optimizer_step(loss, self.opt, self.params)
        self.loop.state["buckets"].append(all_gather_ints(bucket))  # every rank's draw of this step
        return {"loss": loss.item()}


class _SandwichTrainer:
    """Whole space: largest + smallest + random sub-networks per iteration, backbone and candidates trained."""

    title = "elastic supernet (rectified flow; sandwich with in-place distillation)"

    def __init__(self, net: SupernetUNet, pipe: VideoPipeline, blocks: ModelBlocks, cfg: SupernetTrainConfig,
                 out: Path, progress: bool):
        self.net, self.cfg = net, cfg
        self.space = elastic_space(pipe, cfg.space, blocks)
        self.sampler = DynamicCostSampler(self.space, cfg.buckets, cfg.warmup_steps, cfg.seed)
        self.resolutions = [tuple(r) for r in cfg.resolutions] or [(pipe.config.height, pipe.config.width)]
        self.base = pipe.unet.eval().requires_grad_(False).to(device())  # the shipped model (net holds copies)
        backbone = list(net.backbone_parameters())
        candidates = list(net.candidates.parameters())
        self.params = backbone + candidates
        broadcast_params(self.params)
        self.opts = {"opt": torch.optim.AdamW(candidates, lr=cfg.lr, weight_decay=0.0),
                     "backbone": torch.optim.AdamW(backbone, lr=cfg.lr * cfg.backbone_lr_scale, weight_decay=0.0)}
        losses = ("loss", "largest", "smallest") + (("random",) if cfg.random_per_step else ())
        self.loop = TrainLoop(out, {"supernet": net}, self.opts, losses,
                              steps=cfg.steps, lr={"opt": (cfg.lr, cfg.lr_warmup),
                                                   "backbone": (cfg.lr * cfg.backbone_lr_scale, cfg.lr_warmup)},
                              seed=cfg.seed * 1_000_003, checkpoint_every=cfg.checkpoint_every, desc="supernet",
                              progress=progress, extra={"buckets": [], "resolutions": [], "space": list(cfg.space),
                                                        "resolutions_set": [list(r) for r in cfg.resolutions]})

    def members(self, k: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
        """(vector, bucket) of this step's sandwich: the largest (-1), the smallest (-2), then the random draws."""
        return [(self.space.largest, -1), (self.space.smallest, -2)] + [
            self.sampler.sample(k, rng) for _ in range(self.cfg.random_per_step)]

    def step(self, k: int, g: torch.Generator, rank: int, batch) -> dict[str, float]:
        rng = np.random.default_rng([self.cfg.seed, k, rank])
        r = int(rng.integers(len(self.resolutions)))
        members = self.members(k, rng)
        xt, t, hidden, velocity = batch(self.resolutions[r], g)
        target = base_target(self.base, xt, t, hidden, velocity, self.cfg.base_target_weight)
        w = self.cfg.distill_weight
        for opt in self.opts.values():
            opt.zero_grad(set_to_none=True)
        losses, teacher = [], None
        for vector, _ in members:
            codes, subnet = self.space.decode(vector)
            pred = self.net.forward_subnet(codes, subnet, xt, t, hidden)
            data = torch.mean((pred - target) ** 2)
            if teacher is None:  # the largest: the data loss alone, and the others' teacher
                loss, teacher = data, pred.detach()
            else:
                loss = (1 - w) * data + w * torch.mean((pred - teacher) ** 2)
            loss.backward()
            losses.append(loss.item())
        apply_gradients(list(self.opts.values()), self.params)
        self.loop.state["buckets"].append([b for _, bucket in members[2:] for b in all_gather_ints(bucket)])
        self.loop.state["resolutions"].append(all_gather_ints(r))
        logged = {"loss": float(np.mean(losses)), "largest": losses[0], "smallest": losses[1]}
        return {**logged, "random": float(np.mean(losses[2:]))} if len(losses) > 2 else logged


def _bucket_plot(state: dict, cfg: SupernetTrainConfig, path: Path) -> None:
    """Every rank's draw at every step (the random draws of each sandwich), and the resolutions drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = state["buckets"]
    steps = [k for k, per_step in enumerate(buckets) for _ in per_step]
    b = [x for per_step in buckets for x in per_step]
    panels = 2 if cfg.elastic and "resolution" in cfg.space else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 + 3.5 * (panels - 1), 3.5), squeeze=False)
    ax = axes[0][0]
    ax.scatter(steps, b, s=2, alpha=0.4)
    ax.axvline(cfg.warmup_steps, color="k", ls="--", lw=1, label="end of sampling warm-up")
    what = "sub-network" if cfg.elastic else "plan"
    ax.set(xlabel="step", ylabel=f"cost bucket (-1 = largest {what})", title=f"supernet {what} sampling")
    ax.legend(loc="lower right")
    if panels == 2:
        drawn = [r for per_step in state["resolutions"] for r in per_step]
        labels = [f"{h}x{w}" for h, w in state["resolutions_set"]]
        axes[0][1].bar(labels, [drawn.count(i) for i in range(len(labels))])
        axes[0][1].set(xlabel="resolution (pixels)", ylabel="draws", title="resolutions drawn")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
