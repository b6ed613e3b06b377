"""CLIP-style text transformer (causal mask, final LayerNorm, pooled EOS output) and a byte tokenizer.

The byte tokenizer needs no vocabulary file and no download: ids are pad=0, bos=1, eos=2, byte b -> 3+b.
"""
from __future__ import annotations

import torch
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


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.hidden_size)
        self.attn = Attention(cfg.hidden_size, cfg.hidden_size // cfg.num_heads)
        self.norm2 = LayerNorm(cfg.hidden_size)
        self.mlp = FeedForward(cfg.hidden_size, cfg.intermediate_size)

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

    def tokenizer(self) -> ByteTokenizer:
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
        # The tokenizer emits exactly one EOS, so a one-hot bmm picks it (no data-dependent indexing).
        eos = (input_ids == EOS_ID).to(x.dtype)[:, None, :]
        pooled = torch.bmm(eos, x)[:, 0]
        return x, pooled
