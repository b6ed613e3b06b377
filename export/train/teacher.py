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

from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import ModelConfig, SchedulerConfig
from mobile_sdk.models import AutoencoderKL, TextEncoder, VAEDecoder, VideoUNet
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.scheduler import RectifiedFlowScheduler

from export.train.common import EMA, ClipStream
from export.train.distributed import barrier, data_parallel, device, per_rank_batch, rank_and_world, shard
from export.train.loop import TrainLoop


@dataclass
class TeacherTrainConfig:
    steps: int = 4000
    batch_size: int = 16  # global: split over the ranks of a torchrun launch
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
    fsdp: bool = False  # shard weights, gradients, optimizer and EMA over the ranks (export.train.fsdp)


def latent_pool(vae: AutoencoderKL, model_cfg: ModelConfig, n: int, seed: int, cache: Path,
                progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """n synthetic clips as posterior-mean latents [n, C, T, h, w] with prompts; cached in `cache`
    (made by rank 0 alone; the other ranks of a torchrun launch wait for it and read it)."""
    if rank_and_world()[0] == 0 and _read_pool(cache, n) is None:
        _encode_pool(vae, model_cfg, n, seed, cache, progress)
    barrier()
    return _read_pool(cache, n)


def _read_pool(cache: Path, n: int) -> tuple[torch.Tensor, list[str]] | None:
    if not (cache.is_file() and cache.with_suffix(".json").is_file()):
        return None
    prompts = json.loads(cache.with_suffix(".json").read_text())
    return (load_file(str(cache))["latents"], prompts) if len(prompts) == n else None


def _encode_pool(vae: AutoencoderKL, model_cfg: ModelConfig, n: int, seed: int, cache: Path, progress: bool) -> None:
    stream = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, 64, seed=seed)
    latents, prompts = [], []
    with torch.no_grad():
        for k in tqdm(range((n + 63) // 64), desc="encoding latent pool", disable=not progress):
            clips, p = stream.batch(k)
            b, t = clips.shape[:2]
            z = vae.encode(clips.flatten(0, 1), sample=False)
            latents.append(z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4))
            prompts.extend(p)
    with atomic_file(cache.with_suffix(".json")) as tmp:  # prompts first: a pool is read only with its prompts
        tmp.write_text(json.dumps(prompts[:n]))
    with atomic_file(cache) as tmp:
        save_file({"latents": torch.cat(latents)[:n].contiguous()}, str(tmp))


class TextToVideo(nn.Module):
    """The trainable pair, so checkpoints and the EMA treat them as one."""

    def __init__(self, unet: VideoUNet, text_encoder: TextEncoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, xt: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The velocity for prompts' token ids (one call, so DDP sees the whole forward)."""
        hidden, _ = self.text_encoder(input_ids)
        return self.unet(xt, t, hidden)


def train_teacher(model_cfg: ModelConfig, vae_dir: str | Path, out_dir: str | Path, cfg: TeacherTrainConfig,
                  progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(vae_dir).requires_grad_(False)
    model_cfg = dataclasses.replace(model_cfg, vae=vae.config)
    torch.manual_seed(cfg.seed)
    dev = device()
    net = TextToVideo(VideoUNet(model_cfg.unet), TextEncoder(model_cfg.text_encoder)).to(dev)
    ema = EMA(net, cfg.ema_decay)
    checkpointer = None
    if cfg.fsdp:
        from export.train.fsdp import ShardedCheckpointer, shard_model

        shard_model(net)
        shard_model(ema.model)
        checkpointer = ShardedCheckpointer(out_dir, {"opt": net})
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.01)
    loop = TrainLoop(out_dir, {"net": net, "ema": ema.model}, {"opt": opt}, ("loss",), steps=cfg.steps,
                     lr={"opt": (cfg.lr, cfg.warmup)}, seed=cfg.seed * 1_000_003,
                     checkpoint_every=cfg.checkpoint_every, desc="teacher", progress=progress, checkpointer=checkpointer)
    pool, pool_prompts = latent_pool(vae, model_cfg, cfg.pool_clips, cfg.seed + 2, out_dir / "latent_pool.safetensors", progress)
    tokenizer = net.text_encoder.tokenizer()
    per_rank_batch(cfg.batch_size, "--batch-size")
    model = net if cfg.fsdp else data_parallel(net)

    def step(k: int, g: torch.Generator) -> dict[str, float]:
        # drawn for the global batch (the same on every rank), then this rank's shard
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.p_uncond
        noise = torch.randn((cfg.batch_size, *pool.shape[1:]), generator=g)
        t = torch.rand(cfg.batch_size, generator=g)
        idx, drop = shard(idx), shard(drop)
        x0, noise, t = pool[idx].to(dev), shard(noise).to(dev), shard(t).to(dev)
        prompts = ["" if d else pool_prompts[i] for i, d in zip(idx.tolist(), drop.tolist())]
        xt = RectifiedFlowScheduler.add_noise(x0, noise, t)
        loss = torch.mean((model(xt, t, tokenizer(prompts).to(dev)) - RectifiedFlowScheduler.velocity(x0, noise)) ** 2)
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
    final = ema.model
    if cfg.fsdp:  # the whole EMA model, gathered into rank 0's CPU memory (one full copy there)
        from export.train.fsdp import full_state_dict

        weights = full_state_dict(ema.model)
        if loop.is_main:
            final = TextToVideo(VideoUNet(model_cfg.unet), TextEncoder(model_cfg.text_encoder))
            final.load_state_dict(weights)
    report = {"steps": cfg.steps, "batch_size": cfg.batch_size, "world_size": rank_and_world()[1], "fsdp": cfg.fsdp,
              "train_seconds": round(loop.seconds, 1),
              "final_loss": sum(history["loss"][-100:]) / max(1, len(history["loss"][-100:]))}
    if loop.is_main:
        pipe = VideoPipeline(teacher_cfg, final.text_encoder, final.unet, VAEDecoder(vae), tokenizer)
        pipe.save_pretrained(out_dir / "model", extra={"training": {"stage": "teacher", **report}})
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        loop.save_loss_curve(out_dir / "loss.png", "teacher (rectified flow)")
    barrier()  # the next stage reads the model on every rank
    return report
