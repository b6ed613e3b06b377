"""transformers' CLIPTextModel -> our TextEncoder (CLIP's tokenizer: mobile_sdk.models.clip_tokenizer)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from mobile_sdk.config import TextEncoderConfig

from .checkpoint import require

CLIP_CLASSES = ("CLIPTextModel", "CLIPTextModelWithProjection")


def text_encoder_config(cfg: dict, where: Path, max_length: int, eos_id: int) -> TextEncoderConfig:
    arch = cfg.get("architectures") or []
    require(cfg.get("model_type") == "clip_text_model" or any(a in CLIP_CLASSES for a in arch), where,
            f"a {cfg.get('model_type') or arch} text encoder is not supported; only CLIP text models ({', '.join(CLIP_CLASSES)})")
    act = cfg.get("hidden_act", "quick_gelu")
    require(act in ("quick_gelu", "gelu"), where, f"hidden_act {act!r} is not supported (quick_gelu or gelu)")
    require(abs(cfg.get("layer_norm_eps", 1e-5) - 1e-5) < 1e-12, where, "layer_norm_eps must be 1e-5")
    positions = cfg.get("max_position_embeddings", 77)
    require(max_length <= positions, where, f"the tokenizer's model_max_length {max_length} exceeds "
                                            f"max_position_embeddings {positions}")
    return TextEncoderConfig(
        vocab_size=cfg.get("vocab_size", 49408), max_length=max_length, hidden_size=cfg.get("hidden_size", 512),
        num_layers=cfg.get("num_hidden_layers", 12), num_heads=cfg.get("num_attention_heads", 8),
        intermediate_size=cfg.get("intermediate_size", 2048), tokenizer="clip_bpe", eos_id=eos_id, hidden_act=act,
        qkv_bias=True,
    )


RENAMES = [
    (r"^embeddings\.token_embedding\.", "token_embedding."),
    (r"^encoder\.layers\.(\d+)\.layer_norm([12])\.", r"layers.\1.norm\2."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.", r"layers.\1.attn.to_\2."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"layers.\1.attn.to_out."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"layers.\1.mlp."),
    (r"^final_layer_norm\.", "final_norm."),
]


def text_encoder_state(state: dict[str, torch.Tensor], cfg: TextEncoderConfig) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.position_ids" or key.startswith("text_projection."):
            continue  # a buffer of 0..76, and the projection SD does not use
        if key == "embeddings.position_embedding.weight":
            out["position_embedding"] = value[: cfg.max_length]
            continue
        for pattern, repl in RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out
