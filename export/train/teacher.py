"""Stage 2: the rectified-flow teacher (UNet + text encoder trained jointly, VAE frozen).

Prompts are dropped 10 % of the time so the teacher supports classifier-free guidance; an EMA of the
weights is what gets saved.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mobile_sdk.config import ModelConfig, SchedulerConfig
from mobile_sdk.models import AutoencoderKL, TextEncoder, VAEDecoder, VideoUNet
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.scheduler import RectifiedFlowScheduler

from .common import EMA, Checkpointer, ClipStream, Timer, lr_at, save_loss_curve


@dataclass
class TeacherTrainConfig:
    steps: int = 4000
    batch_size: int = 16
    lr: float = 4e-4
    warmup: int = 200
    p_uncond: float = 0.1
    # Clips encoded once into a latent pool (encoding every batch would double the step time).
    pool_clips: int = 4096
    ema_decay: float = 0.999
    seed: int = 0
    sample_steps: int = 25
    guidance_scale: float = 3.0
    checkpoint_every: int = 250


def latent_pool(vae: AutoencoderKL, model_cfg: ModelConfig, n: int, seed: int, cache: Path,
                progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """n synthetic clips as posterior-mean latents [n, C, T, h, w] with prompts; cached in `cache`."""
    if cache.is_file():
        tensors = load_file(str(cache))
        prompts = json.loads(cache.with_suffix(".json").read_text())
        if len(prompts) == n:
            return tensors["latents"], prompts
    stream = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, 64, seed=seed)
    latents, prompts = [], []
    with torch.no_grad():
        for k in tqdm(range((n + 63) // 64), desc="encoding latent pool", disable=not progress):
            clips, p = stream.batch(k)
            b, t = clips.shape[:2]
            z = vae.encode(clips.flatten(0, 1), sample=False)
            latents.append(z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4))
            prompts.extend(p)
    pool = torch.cat(latents)[:n].contiguous()
    save_file({"latents": pool}, str(cache))
    cache.with_suffix(".json").write_text(json.dumps(prompts[:n]))
    return pool, prompts[:n]


class TextToVideo(nn.Module):
    """The trainable pair, so checkpoints and the EMA treat them as one."""

    def __init__(self, unet: VideoUNet, text_encoder: TextEncoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder


def train_teacher(model_cfg: ModelConfig, vae_dir: str | Path, out_dir: str | Path, cfg: TeacherTrainConfig,
                  progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(vae_dir).requires_grad_(False)
    model_cfg = dataclasses.replace(model_cfg, vae=vae.config)
    torch.manual_seed(cfg.seed)
    net = TextToVideo(VideoUNet(model_cfg.unet), TextEncoder(model_cfg.text_encoder))
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.01)
    ckpt = Checkpointer(out_dir)
    state = ckpt.load({"net": net, "ema": ema.model}, {"opt": opt}) or {"step": 0, "seconds": 0.0, "history": {"loss": []}}
    pool, pool_prompts = latent_pool(vae, model_cfg, cfg.pool_clips, cfg.seed + 2, out_dir / "latent_pool.safetensors", progress)
    tokenizer = net.text_encoder.tokenizer()
    timer = Timer(state["seconds"])
    net.train()
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps, desc="teacher", disable=not progress)
    for step in bar:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=g)
        x0, prompts = pool[idx], [pool_prompts[i] for i in idx.tolist()]
        drop = torch.rand(len(prompts), generator=g) < cfg.p_uncond
        prompts = ["" if d else p for p, d in zip(prompts, drop)]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.rand(len(prompts), generator=g)
        xt = RectifiedFlowScheduler.add_noise(x0, noise, t)
        hidden, _ = net.text_encoder(tokenizer(prompts))
        loss = torch.mean((net.unet(xt, t, hidden) - RectifiedFlowScheduler.velocity(x0, noise)) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.update(net, step)
        state["history"]["loss"].append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            state.update(step=step + 1, seconds=timer.seconds)
            ckpt.save({"net": net, "ema": ema.model}, {"opt": opt}, state)

    teacher_cfg = dataclasses.replace(
        model_cfg,
        scheduler=SchedulerConfig(num_inference_steps=cfg.sample_steps),
        guidance_scale=cfg.guidance_scale,
        description=f"{model_cfg.name} rectified-flow teacher ({cfg.sample_steps} steps, CFG {cfg.guidance_scale})",
    )
    pipe = VideoPipeline(teacher_cfg, ema.model.text_encoder, ema.model.unet, VAEDecoder(vae), tokenizer)
    report = {"steps": cfg.steps, "batch_size": cfg.batch_size, "train_seconds": round(timer.seconds, 1),
              "final_loss": sum(state["history"]["loss"][-100:]) / max(1, len(state["history"]["loss"][-100:]))}
    pipe.save_pretrained(out_dir / "model", extra={"training": {"stage": "teacher", **report}})
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_loss_curve(state["history"], out_dir / "loss.png", "teacher (rectified flow)")
    return report
