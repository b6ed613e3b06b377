"""CLIP-style text transformer (causal mask, final LayerNorm, pooled EOS output) and a byte tokenizer.

The byte tokenizer needs no vocabulary file and no download: ids are pad=0, bos=1, eos=2, byte b -> 3+b.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextEncoderConfig
from .layers import Attention, FeedForward, LayerNorm, bc1s_to_tokens, tokens_to_bc1s
from .pretrained import PretrainedMixin

PAD_ID, BOS_ID, EOS_ID, BYTE_OFFSET = 0, 1, 2, 3


class ByteTokenizer:
    """UTF-8 bytes between BOS and EOS, truncated (EOS kept) and padded to max_length."""

    def __init__(self, max_length: int):
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        # surrogateescape: bytes that are not UTF-8 (a prompt from a non-UTF-8 terminal) are kept as bytes
        body = [BYTE_OFFSET + b for b in text.encode("utf-8", errors="surrogateescape")][: self.max_length - 2]
        ids = [BOS_ID, *body, EOS_ID]
        return ids + [PAD_ID] * (self.max_length - len(ids))

    def dropped_bytes(self, text: str) -> int:
        """How many bytes of `text` the model never sees (prompts are cut to max_length - 2 bytes)."""
        return max(0, len(text.encode("utf-8", errors="surrogateescape")) - (self.max_length - 2))

    def __call__(self, prompts: str | list[str]) -> torch.Tensor:
        """[B, max_length] int64 ids."""
        if isinstance(prompts, str):
            prompts = [prompts]
        return torch.tensor([self.encode(p) for p in prompts], dtype=torch.long)

    def to_dict(self) -> dict:
        """What an app needs to tokenize on its own (stored in packages)."""
        return {
            "type": "byte",
            "max_length": self.max_length,
            "pad_id": PAD_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "byte_offset": BYTE_OFFSET,
        }


def tokenizer_from_dict(spec: dict):
    """The tokenizer a tokenizer.json document (already validated against its schema) describes."""
    if spec["type"] == "clip_bpe":
        from ..clip_tokenizer import CLIPTokenizer

        return CLIPTokenizer.from_dict(spec)
    return ByteTokenizer(spec["max_length"])


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.hidden_size)
        self.attn = Attention(cfg.hidden_size, cfg.hidden_size // cfg.num_heads, qkv_bias=cfg.qkv_bias)
        self.norm2 = LayerNorm(cfg.hidden_size)
        self.mlp = FeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))

    def forward_bc1s(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.forward_bc1s(self.norm1.forward_bc1s(x), mask=mask)
        return x + self.mlp.forward_bc1s(self.norm2.forward_bc1s(x))


class TextEncoder(PretrainedMixin, nn.Module):
    """ids [B, L] -> (last_hidden_state [B, L, D], pooled [B, D] at the EOS token)."""

    config_class = TextEncoderConfig
    component = "text_encoder"
    impl = "default"

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Parameter(torch.randn(config.max_length, config.hidden_size) * 0.01)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.final_norm = LayerNorm(config.hidden_size)
        # Finite mask value: -inf can turn into NaN in fp16 softmax on some backends.
        causal = torch.full((config.max_length, config.max_length), -1e4).triu(1)
        self.register_buffer("causal_mask", causal[None], persistent=False)
        if config.tokenizer != "byte":  # earlier[j, k] = 1 for k < j: counts EOS tokens before j (CLIP pads with EOS)
            self.register_buffer("earlier", torch.ones(config.max_length, config.max_length).tril(-1), persistent=False)

    def tokenizer(self) -> ByteTokenizer:
        """The byte tokenizer (a BPE tokenizer is a file: models.clip_tokenizer.CLIPTokenizer)."""
        if self.config.tokenizer != "byte":
            raise ValueError(f"a {self.config.tokenizer} tokenizer is read from the model's tokenizer/ folder")
        return ByteTokenizer(self.config.max_length)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.position_embedding[:length]
        mask = self.causal_mask[:, :length, :length]
        if self.impl == "ane":
            y = tokens_to_bc1s(x)
            mask_kq = mask.transpose(1, 2).unsqueeze(2)  # [1, L_keys, 1, L_queries]
            for layer in self.layers:
                y = layer.forward_bc1s(y, mask_kq)
            x = bc1s_to_tokens(self.final_norm.forward_bc1s(y))
        else:
            for layer in self.layers:
                x = layer(x, mask)
            x = self.final_norm(x)
        # A one-hot bmm picks the EOS (no data-dependent indexing). The byte tokenizer emits exactly one;
        # CLIP's pads with EOS, so only the first (no EOS before it) is kept.
        eos = (input_ids == self.config.eos_id).to(x.dtype)
        if self.config.tokenizer != "byte":
            earlier = self.earlier if length == self.config.max_length else self.earlier[:length, :length]
            eos = eos * (F.linear(eos, earlier) < 0.5).to(x.dtype)
        pooled = torch.bmm(eos[:, None, :], x)[:, 0]
        return x, pooled
