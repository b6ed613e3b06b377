"""What a model is made of: components, parameter counts, temporal slots and the plan (for `inspect`)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import ModelConfig
from .models import AutoencoderKL, TextEncoder, VideoUNet
from .plan import unet_slots


def count_parameters(module: nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in module.named_parameters() if name.startswith(prefix))


def model_summary(config: ModelConfig) -> dict:
    """Counts are taken on the meta device, so even the 0.6B preset costs no memory."""
    with torch.device("meta"):
        unet = VideoUNet(config.unet)
        text_encoder = TextEncoder(config.text_encoder)
        vae = AutoencoderKL(config.vae)
    f = config.vae.downsample_factor
    h, w = config.height // f, config.width // f
    slots = [
        {
            "slot": s.id,
            "op": unet.plan[s.id],
            "channels": s.channels,
            "height": h >> s.level,
            "width": w >> s.level,
            "params": count_parameters(unet, f"temporal.{s.id.replace('.', '_')}."),
        }
        for s in unet_slots(config.unet)
    ]
    return {
        "name": config.name,
        "description": config.description,
        "default_size": {"height": config.height, "width": config.width, "num_frames": config.num_frames, "fps": config.fps},
        "latent_size": {"channels": config.vae.latent_channels, "height": h, "width": w},
        "components": {
            "unet": {"params": count_parameters(unet), "temporal_params": count_parameters(unet, "temporal.")},
            "text_encoder": {"params": count_parameters(text_encoder)},
            "vae_decoder": {"params": count_parameters(vae.decoder)},
            "vae_encoder": {"params": count_parameters(vae.encoder), "note": "training only; not exported"},
        },
        "scheduler": dataclasses.asdict(config.scheduler),
        "plan_counts": unet.plan.counts(),
        "slots": slots,
    }


def format_summary(summary: dict) -> str:
    def m(n: int) -> str:
        return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"

    comps = summary["components"]
    size = summary["default_size"]
    lines = [
        f"model {summary['name']}: {summary['description']}",
        f"default size {size['width']}x{size['height']}, {size['num_frames']} frames at {size['fps']} fps; "
        f"latents {summary['latent_size']['channels']}x{summary['latent_size']['height']}x{summary['latent_size']['width']}",
        "components:",
        f"  unet          {m(comps['unet']['params']):>10}  (temporal layers {m(comps['unet']['temporal_params'])})",
        f"  text_encoder  {m(comps['text_encoder']['params']):>10}",
        f"  vae_decoder   {m(comps['vae_decoder']['params']):>10}",
        f"  vae_encoder   {m(comps['vae_encoder']['params']):>10}  (training only)",
        "plan: " + ", ".join(f"{op} x{n}" for op, n in summary["plan_counts"].items() if n),
        "slots:",
    ]
    for s in summary["slots"]:
        lines.append(f"  {s['slot']:<12} {s['op']:<7} {s['channels']:>5} ch  {s['height']:>3}x{s['width']:<3}  {m(s['params'])}")
    return "\n".join(lines)
