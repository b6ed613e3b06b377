"""diffusers' AutoencoderKL (the SD VAE) -> our per-frame AutoencoderKL."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from mobile_sdk.config import VAEConfig

from .checkpoint import require

# old diffusers checkpoints name the middle attention's projections differently
LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out"}


def vae_config(cfg: dict, where: Path) -> VAEConfig:
    require(cfg.get("_class_name", "AutoencoderKL") == "AutoencoderKL", where,
            f"_class_name {cfg.get('_class_name')!r} is not an AutoencoderKL")
    channels = tuple(cfg.get("block_out_channels", (64,)))
    n = len(channels)
    require(cfg.get("down_block_types", ["DownEncoderBlock2D"] * n) == ["DownEncoderBlock2D"] * n, where,
            "down_block_types must all be DownEncoderBlock2D")
    require(cfg.get("up_block_types", ["UpDecoderBlock2D"] * n) == ["UpDecoderBlock2D"] * n, where,
            "up_block_types must all be UpDecoderBlock2D")
    require(cfg.get("act_fn", "silu") == "silu", where, f"act_fn {cfg.get('act_fn')!r} is not supported (only silu)")
    require(cfg.get("in_channels", 3) == 3 and cfg.get("out_channels", 3) == 3, where, "only RGB VAEs are supported")
    for key in ("shift_factor", "latents_mean", "latents_std"):
        require(cfg.get(key) is None, where, f"{key} is not supported (an SD3/SDXL-style VAE; SD-1.5's has none)")
    require(cfg.get("mid_block_add_attention", True), where, "a VAE without middle attention is not supported")
    return VAEConfig(
        in_channels=3, latent_channels=cfg.get("latent_channels", 4), block_channels=channels,
        layers_per_block=cfg.get("layers_per_block", 1), norm_groups=cfg.get("norm_num_groups", 32),
        scaling_factor=float(cfg.get("scaling_factor", 0.18215)), upsample="nearest", attention_bias=True,
        downsample_padding="bottom_right", quant_conv=cfg.get("use_quant_conv", True),
        post_quant_conv=cfg.get("use_post_quant_conv", True),
    )


def vae_state(state: dict[str, torch.Tensor], cfg: VAEConfig) -> dict[str, torch.Tensor]:
    """Our names: the encoder's and decoder's blocks in one flat list per side, as our VAE runs them."""
    per_down, per_up = cfg.layers_per_block + 1, cfg.layers_per_block + 2  # ResBlocks, then the resampler
    out = {}
    for key, value in state.items():
        key = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.",
                     lambda m: f"encoder.blocks.{int(m[1]) * per_down + int(m[2])}.", key)
        key = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.",
                     lambda m: f"encoder.blocks.{int(m[1]) * per_down + per_down - 1}.", key)
        key = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                     lambda m: f"decoder.blocks.{int(m[1]) * per_up + int(m[2])}.", key)
        key = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.blocks.{int(m[1]) * per_up + per_up - 1}.", key)
        key = re.sub(r"\.mid_block\.resnets\.(\d)\.", r".mid.res\1.", key)
        key = re.sub(r"\.mid_block\.attentions\.0\.group_norm\.", ".mid.attn.norm.", key)
        key = re.sub(r"\.mid_block\.attentions\.0\.(to_q|to_k|to_v|query|key|value|proj_attn|to_out\.0)\.",
                     lambda m: f".mid.attn.attn.{LEGACY_ATTENTION.get(m[1], m[1].replace('.0', ''))}.", key)
        key = key.replace(".conv_shortcut.", ".skip.").replace(".conv_norm_out.", ".norm_out.")
        if value.dim() == 4 and ".mid.attn.attn." in key:  # legacy 1x1-conv projections
            value = value.reshape(value.shape[0], value.shape[1])
        out[key] = value
    return out
