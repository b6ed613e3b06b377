"""diffusers' UNet2DConditionModel (SD-1.5 family: SD-1.x, SD-2.x, BK-SDM, pruned variants) -> VideoUNet's
spatial layers. Everything our layers cannot express exactly is refused, naming the config key."""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from mobile_sdk.config import UNetConfig

from .checkpoint import require

DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
MID_TYPES = {"UNetMidBlock2DCrossAttn": True, None: False}
# key -> the only value we support (diffusers' defaults for SD-1.5)
FIXED = {
    "act_fn": "silu", "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "norm_eps": 1e-5, "time_embedding_type": "positional", "class_embed_type": None,
    "num_class_embeds": None, "addition_embed_type": None, "time_cond_proj_dim": None, "encoder_hid_dim": None,
    "resnet_time_scale_shift": "default", "resnet_out_scale_factor": 1.0, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "dual_cross_attention": False, "only_cross_attention": False, "time_embedding_act_fn": None, "timestep_post_act": None,
    "cross_attention_norm": None, "attention_type": "default", "class_embeddings_concat": False,
    "reverse_transformer_layers_per_block": None, "mid_block_only_cross_attention": None,
}


def _per_stage(value, n: int, key: str, where: Path) -> list:
    if isinstance(value, (list, tuple)):
        require(len(value) == n, where, f"{key} has {len(value)} entries for {n} blocks")
        return list(value)
    return [value] * n


def unet_config(cfg: dict, where: Path) -> UNetConfig:
    require(cfg.get("_class_name", "UNet2DConditionModel") == "UNet2DConditionModel", where,
            f"_class_name {cfg.get('_class_name')!r} is not a UNet2DConditionModel")
    if cfg.get("addition_embed_type") == "text_time":
        require(False, where, "an SDXL UNet (addition_embed_type 'text_time') is not supported; "
                              "import SD-1.5-family UNets (SD-1.x/2.x, BK-SDM, pruned SD-1.5)")
    for key, value in FIXED.items():
        if key in cfg and cfg[key] != value and not (isinstance(value, float) and math.isclose(cfg[key], value)):
            require(False, where, f"{key} = {cfg[key]!r} is not supported (only {value!r}, as in SD-1.5)")
    down = cfg.get("down_block_types", ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"])
    up = cfg.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
    n = len(down)
    require(all(t in DOWN_TYPES for t in down), where, f"down_block_types {down} (supported: {sorted(DOWN_TYPES)})")
    require(all(t in UP_TYPES for t in up) and len(up) == n, where, f"up_block_types {up} (supported: {sorted(UP_TYPES)})")
    attention = [DOWN_TYPES[t] for t in down]
    require([UP_TYPES[t] for t in reversed(up)] == attention, where,
            f"up_block_types {up} must mirror down_block_types {down} (attention at the same levels)")
    mid = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    require(mid in MID_TYPES, where, f"mid_block_type {mid!r} (supported: UNetMidBlock2DCrossAttn or null)")
    layers = set(_per_stage(cfg.get("layers_per_block", 2), n, "layers_per_block", where))
    depth = set(_per_stage(cfg.get("transformer_layers_per_block", 1), n, "transformer_layers_per_block", where))
    require(len(layers) == 1 and len(depth) == 1, where, "layers_per_block and transformer_layers_per_block must be one value for all blocks")
    require(isinstance(cfg.get("cross_attention_dim", 1280), int), where, "cross_attention_dim must be one integer")
    # diffusers' legacy naming: without num_attention_heads, attention_head_dim is the number of heads
    heads = _per_stage(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), n, "attention_head_dim", where)
    channels = tuple(cfg.get("block_out_channels", (320, 640, 1280, 1280)))
    temporal_head_dim = channels[0] // heads[0]
    if any(c % temporal_head_dim for c in channels):
        temporal_head_dim = math.gcd(*channels)
    return UNetConfig(
        in_channels=cfg.get("in_channels", 4), out_channels=cfg.get("out_channels", 4), block_channels=channels,
        layers_per_block=layers.pop(), attention_stages=tuple(attention), transformer_depth=depth.pop(),
        head_dim=temporal_head_dim, cross_attention_dim=cfg.get("cross_attention_dim", 1280),
        norm_groups=cfg.get("norm_num_groups", 32), ff_mult=4, attention_heads=tuple(heads), ff_activation="geglu",
        upsample="nearest", transformer_norm_eps=1e-6, mid_block=MID_TYPES[mid],
    )


RENAMES = [
    (r"^time_embedding\.linear_([12])\.", r"time_embedding.fc\1."),
    (r"^conv_norm_out\.", "norm_out."),
    (r"^mid_block\.resnets\.", "mid.res."),
    (r"^mid_block\.attentions\.", "mid.attn."),
    (r"^down_blocks\.(\d+)\.resnets\.", r"down.\1.res."),
    (r"^down_blocks\.(\d+)\.attentions\.", r"down.\1.attn."),
    (r"^down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.resample."),
    (r"\.time_emb_proj\.", ".time_proj."),
    (r"\.conv_shortcut\.", ".skip."),
    (r"\.transformer_blocks\.", ".blocks."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.ff\.net\.2\.", ".ff.fc2."),
]


def unet_state(state: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    """Our state-dict names and shapes: up blocks renumbered by level, GEGLU's projection split into
    fc1 (value) and gate, 1x1-conv proj_in/proj_out weights as linear weights (the same numbers)."""
    levels = len(cfg.block_channels)
    out = {}
    for key, value in state.items():
        m = re.match(r"^up_blocks\.(\d+)\.(resnets|attentions|upsamplers\.0)\.", key)
        if m:
            part = {"resnets": "res.", "attentions": "attn.", "upsamplers.0": "resample."}[m.group(2)]
            key = f"up.{levels - 1 - int(m.group(1))}.{part}" + key[m.end():]
        for pattern, repl in RENAMES:
            key = re.sub(pattern, repl, key)
        if key.endswith(".ff.net.0.proj.weight") or key.endswith(".ff.net.0.proj.bias"):
            prefix, kind = key.split(".net.0.proj.")
            value_half, gate_half = value.chunk(2, dim=0)
            out[f"{prefix}.fc1.{kind}"], out[f"{prefix}.gate.{kind}"] = value_half, gate_half
            continue
        if re.search(r"\.proj_(in|out)\.weight$", key) and value.dim() == 4:
            value = value.reshape(value.shape[0], value.shape[1])
        out[key] = value
    return out
