"""Stage 2: the many-step teacher, trained on the model's own objective (VAE frozen).

From a preset: the rectified-flow UNet and text encoder trained jointly from scratch. From a model
folder (`start_from`, e.g. an imported SD-1.5-family image model): its weights are the start and, with
`trainable="temporal"` (SnapGen-V), only the temporal layers learn, on the checkpoint's own objective
(epsilon or v-prediction on its DDPM schedule, or rectified flow). Prompts are dropped 10 % of the time
so the teacher supports classifier-free guidance; an EMA of the weights is what gets saved.
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
from mobile_sdk.errors import SDKError
from mobile_sdk.scheduler import make_scheduler

from export.train.common import EMA, ClipStream
from export.train.distributed import barrier, data_parallel, device, per_rank_batch, rank_and_world, shard
from export.train.loop import TrainLoop
from export.train.video_clips import VideoClipStream, fingerprint


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
    trainable: str = "all"  # "all" | "temporal": only the UNet's temporal layers (spatial layers and text encoder frozen)
    data: str | None = None  # a clip list (export.train.video_clips); None: the synthetic data


TRAINABLE = ("all", "temporal")


def latent_pool(vae: AutoencoderKL, model_cfg: ModelConfig, n: int, seed: int, cache: Path,
                progress: bool = True, data: str | Path | None = None) -> tuple[torch.Tensor, list[str]]:
    """n synthetic clips, or every clip of the list `data` (export.train.video_clips), as posterior-mean
    latents [n, C, T, h, w] with their prompts; cached in `cache` (made by rank 0 alone; the other ranks
    of a torchrun launch wait for it and read it)."""
    size = (model_cfg.height, model_cfg.width, model_cfg.num_frames)
    if data is None:
        stream = ClipStream(*size, 64, seed=seed)
    else:
        stream = VideoClipStream(data, *size, model_cfg.fps, 64)
        n, cache = len(stream), cache.with_name(f"{cache.stem}.{fingerprint(data)}{cache.suffix}")
    if rank_and_world()[0] == 0 and _read_pool(cache, n) is None:
        _encode_pool(vae, stream, n, cache, progress)
    barrier()
    return _read_pool(cache, n)


def _read_pool(cache: Path, n: int) -> tuple[torch.Tensor, list[str]] | None:
    if not (cache.is_file() and cache.with_suffix(".json").is_file()):
        return None
    prompts = json.loads(cache.with_suffix(".json").read_text())
    return (load_file(str(cache))["latents"], prompts) if len(prompts) == n else None


def _encode_pool(vae: AutoencoderKL, stream, n: int, cache: Path, progress: bool) -> None:
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


def train_teacher(model_cfg: ModelConfig, vae_dir: str | Path | None, out_dir: str | Path, cfg: TeacherTrainConfig,
                  progress: bool = True, start_from: str | Path | None = None) -> dict:
    """Train from scratch on a preset's config with the VAE in `vae_dir`, or from the model folder
    `start_from` (its config, VAE, tokenizer and weights)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = device()
    if start_from is None:
        vae = AutoencoderKL.from_pretrained(vae_dir).requires_grad_(False)
        model_cfg = dataclasses.replace(model_cfg, vae=vae.config)
        torch.manual_seed(cfg.seed)
        net = TextToVideo(VideoUNet(model_cfg.unet), TextEncoder(model_cfg.text_encoder)).to(dev)
        tokenizer = net.text_encoder.tokenizer()
    else:
        start = VideoPipeline.from_pretrained(start_from)
        model_cfg, vae, tokenizer = start.config, start.vae_decoder.vae.requires_grad_(False), start.tokenizer
        net = TextToVideo(start.unet, start.text_encoder).to(dev)
    trainable = _trainable(net, cfg.trainable, start_from or model_cfg.name)
    scheduler = make_scheduler(model_cfg.scheduler)
    ema = EMA(net, cfg.ema_decay)
    checkpointer = None
    if cfg.fsdp:
        from export.train.fsdp import ShardedCheckpointer, shard_model

        shard_model(net)
        shard_model(ema.model)
        checkpointer = ShardedCheckpointer(out_dir, {"opt": net})
        trainable = [p for p in net.parameters() if p.requires_grad]  # the sharded parameters
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    loop = TrainLoop(out_dir, {"net": net, "ema": ema.model}, {"opt": opt}, ("loss",), steps=cfg.steps,
                     lr={"opt": (cfg.lr, cfg.warmup)}, seed=cfg.seed * 1_000_003,
                     checkpoint_every=cfg.checkpoint_every, desc="teacher", progress=progress, checkpointer=checkpointer)
    pool, pool_prompts = latent_pool(vae, model_cfg, cfg.pool_clips, cfg.seed + 2, out_dir / "latent_pool.safetensors",
                                     progress, cfg.data)
    per_rank_batch(cfg.batch_size, "--batch-size")
    model = net if cfg.fsdp else data_parallel(net)

    def step(k: int, g: torch.Generator) -> dict[str, float]:
        # drawn for the global batch (the same on every rank), then this rank's shard
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.p_uncond
        noise = torch.randn((cfg.batch_size, *pool.shape[1:]), generator=g)
        t = scheduler.sample_training_t(cfg.batch_size, g)
        idx, drop = shard(idx), shard(drop)
        x0, noise, t = pool[idx].to(dev), shard(noise).to(dev), shard(t).to(dev)
        prompts = ["" if d else pool_prompts[i] for i, d in zip(idx.tolist(), drop.tolist())]
        xt = scheduler.add_noise(x0, noise, t)
        loss = torch.mean((model(xt, t, tokenizer(prompts).to(dev)) - scheduler.training_target(x0, noise, t)) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        ema.update(net, k)
        return {"loss": loss.item()}

    net.train()
    history = loop.run(step)

    if start_from is None:
        teacher_cfg = dataclasses.replace(
            model_cfg,
            scheduler=SchedulerConfig(num_inference_steps=cfg.sample_steps),
            guidance_scale=cfg.guidance_scale,
            description=f"{model_cfg.name} rectified-flow teacher ({cfg.sample_steps} steps, CFG {cfg.guidance_scale})",
        )
    else:  # the model keeps its own sampler and guidance
        teacher_cfg = dataclasses.replace(
            model_cfg, description=f"{model_cfg.name} with trained temporal layers ({cfg.trainable} trained, "
                                   f"{cfg.steps} steps on {model_cfg.scheduler.type})")
    final = ema.model
    if cfg.fsdp:  # the whole EMA model, gathered into rank 0's CPU memory (one full copy there)
        from export.train.fsdp import full_state_dict

        weights = full_state_dict(ema.model)
        if loop.is_main:
            final = TextToVideo(VideoUNet(model_cfg.unet), TextEncoder(model_cfg.text_encoder))
            final.load_state_dict(weights)
    report = {"steps": cfg.steps, "batch_size": cfg.batch_size, "world_size": rank_and_world()[1], "fsdp": cfg.fsdp,
              "trainable": cfg.trainable, "trained_parameters": sum(p.numel() for p in trainable),
              "objective": f"{model_cfg.scheduler.type} ({model_cfg.scheduler.prediction_type})",
              "started_from": str(start_from) if start_from else None, "data": cfg.data or "synthetic",
              "clips": len(pool),
              "train_seconds": round(loop.seconds, 1),
              "final_loss": sum(history["loss"][-100:]) / max(1, len(history["loss"][-100:]))}
    if loop.is_main:
        pipe = VideoPipeline(teacher_cfg, final.text_encoder, final.unet, VAEDecoder(vae), tokenizer)
        pipe.save_pretrained(out_dir / "model", extra={"training": {"stage": "teacher", **report}})
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        loop.save_loss_curve(out_dir / "loss.png", f"teacher ({report['objective']}, {cfg.trainable} trained)")
    barrier()  # the next stage reads the model on every rank
    return report


def _trainable(net: TextToVideo, which: str, source) -> list[nn.Parameter]:
    """Freeze what does not train; the parameters that do. `temporal` is SnapGen-V's recipe for a
    pretrained image model: the spatial layers and the text encoder keep the checkpoint's weights."""
    if which not in TRAINABLE:
        raise SDKError(f"trainable must be one of {', '.join(TRAINABLE)}, got {which!r}")
    if which == "all":
        return [p for p in net.parameters() if p.requires_grad]
    net.requires_grad_(False)
    layers = net.unet.temporal.requires_grad_(True)
    params = list(layers.parameters())
    if not params:
        raise SDKError(f"{source}: the model has no temporal layers to train (its plan is all 'none'; "
                       f"import it with --plan)")
    return params
