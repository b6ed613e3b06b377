"""Stage 3: adversarial distillation to 4 fixed steps, in the SnapGen-V manner.

Generator: the teacher's UNet, fine-tuned at the 4 timesteps it will run at, without guidance, in the
teacher's own parameterization (rectified-flow velocity, or an imported model's epsilon/v on its DDPM
schedule, sampled with 4-step DDIM). Regression term (keeps it stable): match the teacher's
classifier-free-guided output at the same noisy input. Adversarial term (hinge): a discriminator made of the frozen teacher UNet's encoder with
small trainable spatio-temporal heads after each down block (frames into batch -> 2-D ResBlock ->
space into batch -> temporal self-attention), each conditioned on the pooled text embedding by a
projection. Real and generated clean latents are re-noised to the same random level before judging.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mobile_sdk.config import SchedulerConfig
from mobile_sdk.models import VideoUNet
from mobile_sdk.models.layers import ResBlock
from mobile_sdk.models.temporal import TemporalAttention
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.scheduler import make_scheduler

from export.train.common import EMA
from export.train.distributed import barrier, data_parallel, device, per_rank_batch, rank_and_world, shard
from export.train.loop import TrainLoop
from export.train.teacher import latent_pool

STUDENT_STEPS = 4
STUDENT_TIMESTEPS = (1.0, 0.75, 0.5, 0.25)  # rectified flow; DDIM's 4 steps follow the noise schedule's spacing


@dataclass
class DistillConfig:
    steps: int = 1200
    batch_size: int = 8  # global: split over the ranks of a torchrun launch
    lr_generator: float = 2e-5
    lr_discriminator: float = 1e-4
    adv_weight: float = 0.1
    guidance_scale: float | None = None  # the teacher's classifier-free guidance (its model folder's scale)
    max_disc_noise: float = 0.7
    ema_decay: float = 0.995
    pool_clips: int = 1024
    seed: int = 0
    checkpoint_every: int = 200
    data: str | None = None  # a clip list (export.train.video_clips); None: the synthetic data


class DiscriminatorHead(nn.Module):
    def __init__(self, ch: int, text_dim: int, groups: int, head_dim: int, max_frames: int):
        super().__init__()
        self.res = ResBlock(ch, ch, groups)
        self.temporal = TemporalAttention(ch, head_dim, max_frames, joint=False)
        self.logit = nn.Conv2d(ch, 1, 1)
        self.text_proj = nn.Linear(text_dim, ch)

    def forward(self, feature: torch.Tensor, num_frames: int, pooled: torch.Tensor) -> torch.Tensor:
        h = self.temporal(self.res(feature), num_frames)
        n, c, hh, ww = h.shape
        per_clip = h.reshape(n // num_frames, num_frames, c, hh * ww)
        projection = (per_clip * self.text_proj(pooled)[:, None, :, None]).sum(dim=2) / math.sqrt(c)
        logits = self.logit(h).reshape(n // num_frames, num_frames, hh * ww) + projection
        return logits.flatten(1).mean(dim=1)  # one score per clip


class Discriminator(nn.Module):
    """Trainable heads over a frozen UNet encoder (the backbone is not a registered submodule)."""

    def __init__(self, backbone: VideoUNet, text_dim: int):
        super().__init__()
        cfg = backbone.config
        self.heads = nn.ModuleList(
            DiscriminatorHead(ch, text_dim, cfg.norm_groups, cfg.head_dim, cfg.max_frames) for ch in cfg.block_channels
        )
        self._backbone = [backbone.eval().requires_grad_(False)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        features = self._backbone[0].encoder_features(x, t, hidden)
        return sum(head(f, x.shape[2], pooled) for head, f in zip(self.heads, features)) / len(self.heads)


def _student_scheduler(teacher: SchedulerConfig) -> SchedulerConfig:
    """The 4 steps the student runs: fixed rectified-flow times, or the teacher's DDIM at 4 steps."""
    if teacher.type == "ddim":
        return dataclasses.replace(teacher, num_inference_steps=STUDENT_STEPS)
    return SchedulerConfig(num_inference_steps=STUDENT_STEPS, timesteps=STUDENT_TIMESTEPS)


def train_distilled(teacher_dir: str | Path, out_dir: str | Path, cfg: DistillConfig, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = VideoPipeline.from_pretrained(teacher_dir)
    model_cfg = teacher.config
    dev = device()
    text_encoder = teacher.text_encoder.requires_grad_(False).to(dev)
    vae = teacher.vae_decoder.vae.requires_grad_(False)  # encodes the latent pool once, on the CPU
    teacher_unet = teacher.unet.requires_grad_(False).to(dev)
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher_unet).requires_grad_(True).train()
    disc = Discriminator(teacher_unet, model_cfg.text_encoder.hidden_size).to(dev)
    ema = EMA(student, cfg.ema_decay)
    opt_g = torch.optim.AdamW(student.parameters(), lr=cfg.lr_generator, weight_decay=0.0, betas=(0.0, 0.99))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr_discriminator, weight_decay=0.0, betas=(0.0, 0.99))
    loop = TrainLoop(out_dir, {"student": student, "disc": disc, "ema": ema.model}, {"opt_g": opt_g, "opt_d": opt_d},
                     ("regression", "d_loss", "g_adv"), steps=cfg.steps, lr={"opt_g": (cfg.lr_generator, 50)},
                     seed=cfg.seed * 1_000_003, checkpoint_every=cfg.checkpoint_every, desc="distill", progress=progress)
    pool, pool_prompts = latent_pool(vae, model_cfg, cfg.pool_clips, cfg.seed + 3, out_dir / "latent_pool.safetensors",
                                     progress, cfg.data)
    tokenizer = teacher.tokenizer
    guidance = model_cfg.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale
    student_cfg = _student_scheduler(model_cfg.scheduler)
    scheduler = make_scheduler(student_cfg)
    timesteps = torch.tensor(scheduler.timesteps)
    per_rank_batch(cfg.batch_size, "batch size")
    # The discriminator's gradients are averaged in its own backward; its third call below (the
    # generator's adversarial term) goes around DDP: those gradients are never applied.
    student_dp, disc_dp = data_parallel(student), data_parallel(disc)

    def step(k: int, g: torch.Generator) -> dict[str, float]:
        # drawn for the global batch (the same on every rank), then this rank's shard
        shape = (cfg.batch_size, *pool.shape[1:])
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=g)
        noise = torch.randn(shape, generator=g)
        t = timesteps[torch.randint(len(timesteps), (cfg.batch_size,), generator=g)]
        t_d = torch.rand(cfg.batch_size, generator=g) * cfg.max_disc_noise
        n_d = torch.randn(shape, generator=g)
        idx = shard(idx)
        noise, t, t_d, n_d = (shard(x).to(dev) for x in (noise, t, t_d, n_d))
        x0, prompts = pool[idx].to(dev), [pool_prompts[i] for i in idx.tolist()]
        b = len(prompts)
        xt = scheduler.add_noise(x0, noise, t)
        with torch.no_grad():
            hidden, pooled = text_encoder(tokenizer(prompts).to(dev))
            uncond, _ = text_encoder(tokenizer([""] * b).to(dev))
            v_c, v_u = teacher_unet(xt, t, hidden), teacher_unet(xt, t, uncond)
            v_target = v_u + guidance * (v_c - v_u)

        v = student_dp(xt, t, hidden)
        x0_pred = scheduler.predict_x0(xt, v, t)

        d_real = disc_dp(scheduler.add_noise(x0, n_d, t_d), t_d, hidden, pooled)
        d_fake = disc_dp(scheduler.add_noise(x0_pred.detach(), n_d, t_d), t_d, hidden, pooled)
        d_loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        regression = torch.mean((v - v_target) ** 2)
        g_adv = -disc(scheduler.add_noise(x0_pred, n_d, t_d), t_d, hidden, pooled).mean()
        loss = regression + cfg.adv_weight * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_g.step()
        ema.update(student, k)
        return {"regression": regression.item(), "d_loss": d_loss.item(), "g_adv": abs(g_adv.item())}

    loop.run(step)

    distilled_cfg = dataclasses.replace(
        model_cfg, scheduler=student_cfg, guidance_scale=1.0,
        description=f"{model_cfg.name} distilled to {STUDENT_STEPS} steps (adversarial, no guidance)",
    )
    pipe = VideoPipeline(distilled_cfg, text_encoder, ema.model, teacher.vae_decoder, tokenizer)
    report = {"steps": cfg.steps, "batch_size": cfg.batch_size, "world_size": rank_and_world()[1],
              "train_seconds": round(loop.seconds, 1),
              "config": {**dataclasses.asdict(cfg), "guidance_scale": guidance}}
    if loop.is_main:
        pipe.save_pretrained(out_dir / "model", extra={"training": {"stage": "distilled", **report}})
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        loop.save_loss_curve(out_dir / "loss.png", "4-step adversarial distillation")
    barrier()
    return report
