"""VideoUNet: a compact SD-1.5-style latent UNet whose temporal slots each hold a temporal op from a plan.

Spatial layers see frames as batch ([B*T, C, H, W]); temporal layers mix across frames. Inputs:
latents [B, C, T, H, W], timestep [B] (rectified-flow t in [0, 1], 1 = pure noise), text embeddings
[B, L, D]; output: the velocity, shaped like the latents. Shapes are static, so it exports cleanly.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..config import UNetConfig
from ..plan import TemporalPlan, slot_id, unet_slots
from .layers import (
    Attention, Downsample, FeedForward, GroupNorm, LayerNorm, ResBlock, Upsample, distinct_view, linear_bc1s, silu,
    tokens_to_bc1s,
)
from .pretrained import PretrainedMixin
from .temporal import make_temporal_layer


class TimestepEmbedding(nn.Module):
    def __init__(self, freq_dim: int, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.fc1 = nn.Linear(2 * half, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t.float() * 1000.0).reshape(-1, 1) * self.freqs.reshape(1, -1)  # reshape: XNNPACK takes no unsqueeze
        return self.fc2(silu(self.fc1(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, head_dim: int, context_dim: int, ff_inner: int, ff_activation: str = "gelu",
                 attention_inner: int | None = None):
        super().__init__()
        self.norm1, self.attn1 = LayerNorm(dim), Attention(dim, head_dim, inner=attention_inner)
        self.norm2, self.attn2 = LayerNorm(dim), Attention(dim, head_dim, context_dim, inner=attention_inner)
        self.norm3, self.ff = LayerNorm(dim), FeedForward(dim, ff_inner, ff_activation)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: [B*T, HW, C]; context: [B, L, D]. Cross-attention runs over all frames of a clip at once,
        so the text is never repeated per frame."""
        n, hw, c = x.shape
        x = x + self.attn1(self.norm1(x))
        per_clip = self.norm2(x).reshape(n // num_frames, num_frames * hw, c)
        x = x + self.attn2(per_clip, context).reshape(n, hw, c)
        return x + self.ff(self.norm3(x))

    def forward_bc1s(self, x: torch.Tensor, context_per_frame: torch.Tensor) -> torch.Tensor:
        """x: [B*T, C, 1, HW]; context_per_frame: [B*T, D, 1, L]."""
        x = x + self.attn1.forward_bc1s(self.norm1.forward_bc1s(x))
        x = x + self.attn2.forward_bc1s(self.norm2.forward_bc1s(x), context_per_frame)
        return x + self.ff.forward_bc1s(self.norm3.forward_bc1s(x))


class SpatialTransformer(nn.Module):
    """Per-frame self-attention, cross-attention to the text and a feed-forward (SD's Transformer2D; its
    1x1-conv proj_in/proj_out are these linears with the same weights)."""

    impl = "default"

    def __init__(self, ch: int, cfg: UNetConfig, level: int):
        super().__init__()
        self.norm = GroupNorm(cfg.norm_groups, ch, cfg.transformer_norm_eps)
        self.proj_in = nn.Linear(ch, ch)
        self.blocks = nn.ModuleList(
            TransformerBlock(ch, cfg.stage_head_dim(level), cfg.cross_attention_dim, cfg.ff_inner(level),
                             cfg.ff_activation, cfg.attention_inner(level))
            for _ in range(cfg.stage_transformer_depth(level))
        )
        self.proj_out = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.impl == "ane":  # feature maps are already channels-first: [B*T, C, 1, HW], no transposes
            y = linear_bc1s(self.proj_in, self.norm(x).reshape(n, c, 1, h * w))
            ctx = tokens_to_bc1s(context)
            if num_frames > 1:  # the text is small: repeat it per frame rather than move activations
                ctx = torch.cat([ctx.unsqueeze(1)] * num_frames, dim=1).flatten(0, 1)
            for block in self.blocks:
                y = block.forward_bc1s(y, ctx)
            return x + linear_bc1s(self.proj_out, y).reshape(n, c, h, w)
        tokens = self.proj_in(self.norm(x).reshape(n, c, h * w).permute(0, 2, 1))
        for block in self.blocks:
            tokens = block(tokens, context, num_frames)
        return x + self.proj_out(tokens).permute(0, 2, 1).reshape(n, c, h, w)


class Stage(nn.Module):
    """ResBlocks with optional transformers, and an optional resampler at the end. An up stage with fewer
    blocks than skips (config.up_blocks) drops the last `unused_skips` of its skips."""

    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.resample: nn.Module | None = None
        self.unused_skips = 0


def _slot_key(slot: str) -> str:
    return slot.replace(".", "_")


class VideoUNet(PretrainedMixin, nn.Module):
    config_class = UNetConfig
    component = "unet"

    def __init__(self, config: UNetConfig, plan: Mapping[str, str] | None = None):
        """`plan` (a spec, globs allowed) overrides config.temporal_plan; the resolved plan is kept in config."""
        super().__init__()
        plan = TemporalPlan.resolve(config.temporal_plan if plan is None else plan, config)
        self.config = UNetConfig(**{**config.__dict__, "temporal_plan": plan.to_dict()})
        self.plan = plan
        cfg = self.config
        chs, levels = cfg.block_channels, len(cfg.block_channels)
        temb_dim = 4 * chs[0]
        self.time_embedding = TimestepEmbedding(chs[0], temb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)

        skip_chs = [chs[0]]
        ch = chs[0]
        self.down = nn.ModuleList()
        for level, out_ch in enumerate(chs):
            stage = Stage()
            for _ in range(cfg.layers_per_block):
                stage.res.append(ResBlock(ch, out_ch, cfg.norm_groups, temb_dim, inner=cfg.res_inner(level)))
                ch = out_ch
                if cfg.attention_stages[level]:
                    stage.attn.append(SpatialTransformer(ch, cfg, level))
                skip_chs.append(ch)
            if level < levels - 1:
                stage.resample = Downsample(ch)
                skip_chs.append(ch)
            self.down.append(stage)

        self.mid = Stage()
        if cfg.mid_block:
            inner = cfg.res_inner(levels - 1)
            self.mid.res.extend(ResBlock(ch, ch, cfg.norm_groups, temb_dim, inner=inner) for _ in range(2))
            self.mid.attn.append(SpatialTransformer(ch, cfg, levels - 1))

        up_by_level: dict[int, Stage] = {}
        for level in reversed(range(levels)):
            stage, out_ch = Stage(), chs[level]
            for j in range(cfg.layers_per_block + 1):
                skip_ch = skip_chs.pop()
                if j >= cfg.up_block_count(level):  # a dropped block: its skip goes unused
                    continue
                stage.res.append(ResBlock(ch + skip_ch, out_ch, cfg.norm_groups, temb_dim, inner=cfg.res_inner(level)))
                ch = out_ch
                if cfg.attention_stages[level]:
                    stage.attn.append(SpatialTransformer(ch, cfg, level))
            stage.unused_skips = cfg.layers_per_block + 1 - len(stage.res)
            if level > 0:
                stage.resample = Upsample(ch, cfg.upsample)
            up_by_level[level] = stage
        self.up = nn.ModuleList(up_by_level[level] for level in range(levels))

        self.norm_out = GroupNorm(cfg.norm_groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels, 3, padding=1)

        self.temporal = nn.ModuleDict()
        for slot in unet_slots(cfg):
            layer = make_temporal_layer(
                plan[slot.id], slot.channels, cfg.norm_groups, cfg.head_dim, cfg.temporal_kernel, cfg.max_frames
            )
            if layer is not None:
                self.temporal[_slot_key(slot.id)] = layer

    def temporal_layer(self, slot: str) -> nn.Module | None:
        key = _slot_key(slot)
        return self.temporal[key] if key in self.temporal else None

    def _t(self, slot: str, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        layer = self.temporal_layer(slot)
        return x if layer is None else layer(x, num_frames)

    def _run_stage(self, name: str, stage: Stage, x, temb, ctx, t, skips: list | None, push: list | None):
        for j, res in enumerate(stage.res):
            if skips is not None:
                skip = skips.pop()
                if skip is x:  # no middle block: the deepest up stage joins the last down output with itself
                    skip = distinct_view(skip)
                x = torch.cat([x, skip], dim=1)
            x = self._t(slot_id(name, "res", j), res(x, temb, t), t)
            if len(stage.attn):
                x = self._t(slot_id(name, "attn", j), stage.attn[j](x, ctx, t), t)
            if push is not None:
                push.append(x)
        if skips is not None:
            del skips[len(skips) - stage.unused_skips:]
        return x

    def _embed(self, sample, timestep, encoder_hidden_states):
        b, c, t, h, w = sample.shape
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        return self.conv_in(x), self.time_embedding(timestep), encoder_hidden_states, t

    def encoder_features(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """Output of each down stage ([B*T, C, h, w], before its downsampler): the discriminator's backbone."""
        x, temb, ctx, t = self._embed(sample, timestep, encoder_hidden_states)
        features = []
        for level, stage in enumerate(self.down):
            x = self._run_stage(f"down{level}", stage, x, temb, ctx, t, None, None)
            features.append(x)
            if stage.resample is not None:
                x = stage.resample(x)
        return features

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = sample.shape
        x, temb, ctx, t = self._embed(sample, timestep, encoder_hidden_states)
        skips = [x]
        for level, stage in enumerate(self.down):
            x = self._run_stage(f"down{level}", stage, x, temb, ctx, t, None, skips)
            if stage.resample is not None:
                x = stage.resample(x)
                skips.append(x)

        if len(self.mid.res):
            x = self._t("mid.res0", self.mid.res[0](x, temb, t), t)
            x = self._t("mid.attn0", self.mid.attn[0](x, ctx, t), t)
            x = self._t("mid.res1", self.mid.res[1](x, temb, t), t)

        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            x = self._run_stage(f"up{level}", stage, x, temb, ctx, t, skips, None)
            if stage.resample is not None:
                x = stage.resample(x)

        x = self.conv_out(silu(self.norm_out(x)))
        return x.reshape(b, t, -1, h, w).permute(0, 2, 1, 3, 4)
