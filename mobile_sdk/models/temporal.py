"""Temporal layers that can sit in any slot. All take frames-in-batch tensors [B*T, C, H, W].

Each is residual with a zero-initialised output, so adding one to an image backbone starts as the
identity. conv3d is computed as 2-D convs whose outputs are shifted in time and summed, because
Conv3d is not delegated by XNNPACK; conv1d is the same with 1x1 taps.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Attention, GroupNorm, LayerNorm, silu, sinusoidal_embedding


def shift_frames(y: torch.Tensor, offset: int, num_frames: int) -> torch.Tensor:
    """out[t] = y[t + offset] (zero outside the clip), for frames-in-batch y of shape [B*T, C, H, W]."""
    if offset == 0:
        return y
    n, c, h, w = y.shape
    v = y.reshape(n // num_frames, num_frames, c, h * w)
    if abs(offset) >= num_frames:
        return y * 0.0
    # Zero frames as `slice * 0` and a cat, not F.pad: XNNPACK's runtime rejects constant padding of
    # int8 tensors (StaticConstantPad: invalid parameter), which broke int8 packages.
    if offset > 0:
        v = torch.cat([v[:, offset:], v[:, :offset] * 0.0], dim=1)
    else:
        v = torch.cat([v[:, offset:] * 0.0, v[:, :offset]], dim=1)
    return v.reshape(n, c, h, w)


class TemporalConv(nn.Module):
    """Residual temporal convolution: kernel (kt, 1, 1) for "conv1d", (kt, 3, 3) for "conv3d"."""

    def __init__(self, channels: int, groups: int, kernel_t: int = 3, kernel_s: int = 1):
        super().__init__()
        self.kernel_t, self.kernel_s = kernel_t, kernel_s
        self.norm = GroupNorm(groups, channels)
        # One 2-D conv per temporal tap; tap i reads frame t + i - kernel_t // 2. Only the centre has a bias.
        self.taps = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_s, padding=kernel_s // 2, bias=(i == kernel_t // 2))
            for i in range(kernel_t)
        )
        for tap in self.taps:
            nn.init.zeros_(tap.weight)
            if tap.bias is not None:
                nn.init.zeros_(tap.bias)

    def conv3d_weight(self) -> torch.Tensor:
        """The equivalent Conv3d weight [C, C, kt, ks, ks] (for checks and converters)."""
        return torch.stack([tap.weight for tap in self.taps], dim=2)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        y = silu(self.norm(x))
        centre = self.kernel_t // 2
        out = self.taps[centre](y)
        for i, tap in enumerate(self.taps):
            if i != centre:
                out = out + shift_frames(tap(y), i - centre, num_frames)
        return x + out


class TemporalAttention(nn.Module):
    """Residual temporal self-attention: "attn1d" (each position over frames) or "attn3d" (all jointly)."""

    impl = "default"

    def __init__(self, channels: int, head_dim: int, max_frames: int, joint: bool):
        super().__init__()
        self.joint = joint
        self.norm = LayerNorm(channels)
        self.attn = Attention(channels, head_dim)
        nn.init.zeros_(self.attn.to_out.weight)
        nn.init.zeros_(self.attn.to_out.bias)
        pos = sinusoidal_embedding(torch.arange(max_frames), channels)
        self.register_buffer("frame_pos", pos, persistent=False)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        n, c, h, w = x.shape
        b, t, hw = n // num_frames, num_frames, h * w
        if self.impl == "ane":
            return x + self._forward_bc1s(x, b, t, c, hw).reshape(n, c, h, w)
        tokens = x.reshape(b, t, c, hw).permute(0, 1, 3, 2) + self.frame_pos[:t].reshape(1, t, 1, c)
        if self.joint:
            seq = tokens.reshape(b, t * hw, c)
            out = self.attn(self.norm(seq)).reshape(b, t, hw, c).permute(0, 1, 3, 2)
        else:
            seq = tokens.permute(0, 2, 1, 3).reshape(b * hw, t, c)
            out = self.attn(self.norm(seq)).reshape(b, hw, t, c).permute(0, 2, 3, 1)
        return x + out.reshape(n, c, h, w)


    def _forward_bc1s(self, x: torch.Tensor, b: int, t: int, c: int, hw: int) -> torch.Tensor:
        """Channels-first sequences [N, C, 1, S]; returns the residual branch as [B, T, C, HW]."""
        frames = x.reshape(b, t, c, hw) + self.frame_pos[:t].reshape(1, t, c, 1)
        if self.joint:
            seq = frames.permute(0, 2, 1, 3).reshape(b, c, 1, t * hw)
            out = self.attn.forward_bc1s(self.norm.forward_bc1s(seq))
            return out.reshape(b, c, t, hw).permute(0, 2, 1, 3)
        seq = frames.permute(0, 3, 2, 1).reshape(b * hw, c, 1, t)
        out = self.attn.forward_bc1s(self.norm.forward_bc1s(seq))
        return out.reshape(b, hw, c, t).permute(0, 3, 2, 1)


def make_temporal_layer(op: str, channels: int, groups: int, head_dim: int, kernel_t: int, max_frames: int) -> nn.Module | None:
    """The module for a plan op ("none" gives None)."""
    if op == "none":
        return None
    if op == "conv1d":
        return TemporalConv(channels, groups, kernel_t, kernel_s=1)
    if op == "conv3d":
        return TemporalConv(channels, groups, kernel_t, kernel_s=3)
    if op == "attn1d":
        return TemporalAttention(channels, head_dim, max_frames, joint=False)
    if op == "attn3d":
        return TemporalAttention(channels, head_dim, max_frames, joint=True)
    raise ValueError(f"unknown temporal op {op!r}")
