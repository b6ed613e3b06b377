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

from export.train.common import EMA, ClipStream
from export.train.loop import TrainLoop


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
    loop = TrainLoop(out_dir, {"net": net, "ema": ema.model}, {"opt": opt}, ("loss",), steps=cfg.steps,
                     lr={"opt": (cfg.lr, cfg.warmup)}, seed=cfg.seed * 1_000_003,
                     checkpoint_every=cfg.checkpoint_every, desc="teacher", progress=progress)
    pool, pool_prompts = latent_pool(vae, model_cfg, cfg.pool_clips, cfg.seed + 2, out_dir / "latent_pool.safetensors", progress)
    tokenizer = net.text_encoder.tokenizer()

    def step(k: int, g: torch.Generator) -> dict[str, float]:
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
        ema.update(net, k)
        return {"loss": loss.item()}

    net.train()
    history = loop.run(step)

    teacher_cfg = dataclasses.replace(
        model_cfg,
        scheduler=SchedulerConfig(num_inference_steps=cfg.sample_steps),
        guidance_scale=cfg.guidance_scale,
        description=f"{model_cfg.name} rectified-flow teacher ({cfg.sample_steps} steps, CFG {cfg.guidance_scale})",
    )
    pipe = VideoPipeline(teacher_cfg, ema.model.text_encoder, ema.model.unet, VAEDecoder(vae), tokenizer)
    report = {"steps": cfg.steps, "batch_size": cfg.batch_size, "train_seconds": round(loop.seconds, 1),
              "final_loss": sum(history["loss"][-100:]) / max(1, len(history["loss"][-100:]))}
    pipe.save_pretrained(out_dir / "model", extra={"training": {"stage": "teacher", **report}})
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    loop.save_loss_curve(out_dir / "loss.png", "teacher (rectified flow)")
    return report
