"""Building blocks written so that torch.export + XNNPACK delegate all of their compute.

XNNPACK has no GroupNorm, LayerNorm or SiLU kernels and its mean only reduces the two inner dims of a
4-D tensor (over H, W in its NHWC layout), and 4-D matmuls lower to non-delegated expand_copy. So norms
are means and variances built from those means and constant-weight convolutions or matmuls (no reshapes:
each one costs the delegate a layout transpose), SiLU is x * sigmoid(x), and attention uses 3-D bmm. State-dict names match torch.nn's modules.

Token modules also have a Neural-Engine layout (`*_bc1s` methods, as in apple/ml-stable-diffusion):
tensors are channels-first [B, C, 1, S], linears are 1x1 convolutions over the same weights, and
attention is split per head with einsums. `set_attention_implementation(model, "ane")` switches the
callers to it; both layouts compute the same function.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DOWNSAMPLE_PADDINGS, UPSAMPLE_MODES


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class GroupNorm(nn.Module):
    """nn.GroupNorm for [N, C, H, W] inputs (same parameters, same function), in ops XNNPACK runs in its own
    NHWC layout: per-channel means over H and W, averaged over each group's channels by a grouped 1x1
    convolution with constant weights (`group_average`, not saved). Reshaping to [N, groups, C/groups, H*W]
    instead made the delegate transpose every activation to NCHW and back around each norm: the demo
    model's VAE decoder ran 28 % slower, its UNet 7 % (with LayerNorm's reshape, below)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        per_group = num_channels // num_groups
        # first-k slices of it stay exact for sub-networks (export.nas.elastic keeps the group size)
        self.register_buffer("group_average", torch.full((num_channels, per_group, 1, 1), 1.0 / per_group),
                             persistent=False)

    def _group_mean(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, 1, 1]: the mean over each channel's group and H, W."""
        return F.conv2d(x.mean(dim=(2, 3), keepdim=True), self.group_average, groups=self.num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._group_mean(x)
        scale = torch.rsqrt(self._group_mean(centred * centred) + self.eps) * self.weight.reshape(1, -1, 1, 1)
        return centred * scale + self.bias.reshape(1, -1, 1, 1)


ATTENTION_IMPLEMENTATIONS = ("default", "ane")


def set_attention_implementation(model: nn.Module, impl: str) -> nn.Module:
    """Switch every module with an `impl` attribute between the default and the ANE layout (in place)."""
    if impl not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {impl!r}; choose from {ATTENTION_IMPLEMENTATIONS}")
    for m in model.modules():
        if hasattr(m, "impl"):
            m.impl = impl
    return model


@contextlib.contextmanager
def attention_implementation(model: nn.Module, impl: str):
    """`set_attention_implementation` for a `with` block, each module's own setting restored after it: a
    converter can trace a model in the ANE layout without a deep copy (2.4 GB of weights at 0.6B)."""
    before = {m: m.impl for m in model.modules() if hasattr(m, "impl")}
    set_attention_implementation(model, impl)
    try:
        yield model
    finally:
        for m, old in before.items():
            m.impl = old


def linear_bc1s(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear applied to channels-first [B, C, 1, S] as a 1x1 convolution over the same weights."""
    w = layer.weight
    return F.conv2d(x, w.reshape(w.shape[0], w.shape[1], 1, 1), layer.bias)


def tokens_to_bc1s(x: torch.Tensor) -> torch.Tensor:
    """[N, L, D] -> [N, D, 1, L]."""
    return x.permute(0, 2, 1).unsqueeze(2)


def bc1s_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """[N, D, 1, L] -> [N, L, D]."""
    return x.squeeze(2).permute(0, 2, 1)


class LayerNorm(nn.Module):
    """nn.LayerNorm over the last dim of [N, L, D] tokens, with the means as matmuls by a constant
    1/D column (`mean_weight`, not saved): XNNPACK reduces means only over two dims of a 4-D tensor, in
    NHWC, and a [N, L, D, 1] reshape for it cost two transposes per norm."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("mean_weight", torch.full((1, dim), 1.0 / dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.linear(x, self.mean_weight)
        var = F.linear(centred * centred, self.mean_weight)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def forward_bc1s(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise over channels of [B, C, 1, S]."""
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class Attention(nn.Module):
    """Multi-head attention over [N, L, D] tokens with 3-D bmm; `context` gives cross-attention.
    `qkv_bias`: CLIP's and the SD VAE's projections have biases, SD's UNet's do not. `inner` (heads x head
    size, default `dim`) is narrower in sub-networks that keep only the first heads."""

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None, out_bias: bool = True,
                 qkv_bias: bool = False, inner: int | None = None):
        super().__init__()
        inner = inner or dim
        self.heads = max(1, inner // head_dim)
        self.head_dim = inner // self.heads
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_out = nn.Linear(inner, dim, bias=out_bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_dim).permute(0, 2, 1, 3).reshape(n * self.heads, length, self.head_dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, length, _ = x.shape
        context = x if context is None else context
        q = self._split(self.to_q(x) * (self.head_dim**-0.5))
        k = self._split(self.to_k(context))
        v = self._split(self.to_v(context))
        scores = torch.bmm(q, k.transpose(1, 2))
        if mask is not None:
            scores = scores + mask
        out = torch.bmm(torch.softmax(scores, dim=-1), v)
        out = out.reshape(n, self.heads, length, self.head_dim).permute(0, 2, 1, 3).reshape(n, length, -1)
        return self.to_out(out)

    def forward_bc1s(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, C, 1, S], context [B, Cc, 1, L], mask [1, L, 1, S] (added to the scores): split-einsum attention."""
        context = x if context is None else context
        q = linear_bc1s(self.to_q, x) * (self.head_dim**-0.5)
        k = linear_bc1s(self.to_k, context)
        v = linear_bc1s(self.to_v, context)
        d = self.head_dim
        heads = []
        k_t = k.transpose(1, 3)  # [B, L, 1, C]: the layout Core ML's einsum lowering maps onto a matmul
        for h in range(self.heads):
            qh, kh, vh = q[:, h * d : (h + 1) * d], k_t[..., h * d : (h + 1) * d], v[:, h * d : (h + 1) * d]
            scores = torch.einsum("bchq,bkhc->bkhq", qh, kh)  # [B, L, 1, S]
            if mask is not None:
                scores = scores + mask
            heads.append(torch.einsum("bkhq,bchk->bchq", torch.softmax(scores, dim=1), vh))
        return linear_bc1s(self.to_out, torch.cat(heads, dim=1))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's GELU approximation x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


FF_ACTIVATIONS = ("gelu", "quick_gelu", "geglu")


class FeedForward(nn.Module):
    """fc2(act(fc1(x))). "geglu" (SD's UNet) is fc2(fc1(x) * gelu(gate(x))): diffusers' one projection to
    2 * hidden is split into `fc1` and `gate`, so no tensor is sliced at run time."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        if activation not in FF_ACTIVATIONS:
            raise ValueError(f"unknown feed-forward activation {activation!r}; choose from {FF_ACTIVATIONS}")
        self.activation = activation
        self.fc1 = nn.Linear(dim, hidden)
        self.gate = nn.Linear(dim, hidden) if activation == "geglu" else None
        self.fc2 = nn.Linear(hidden, dim)

    def _hidden(self, x: torch.Tensor, linear) -> torch.Tensor:
        h = linear(self.fc1, x)
        if self.gate is not None:
            return h * F.gelu(linear(self.gate, x))
        return quick_gelu(h) if self.activation == "quick_gelu" else F.gelu(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self._hidden(x, lambda layer, t: layer(t)))

    def forward_bc1s(self, x: torch.Tensor) -> torch.Tensor:
        return linear_bc1s(self.fc2, self._hidden(x, linear_bc1s))


class ResBlock(nn.Module):
    """SD-style ResBlock: GN-SiLU-conv, add the (optional) time embedding, GN-SiLU-conv, skip.

    `inner` (conv1's output, conv2's input; default `out_ch`) is narrower in sub-networks. Its GroupNorm keeps
    the group size (out_ch / groups) rather than the group count, so the first k groups of a narrower block
    normalise exactly like the first k groups of the full one."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, temb_dim: int | None = None, eps: float = 1e-5,
                 inner: int | None = None):
        super().__init__()
        inner = inner or out_ch
        self.norm1 = GroupNorm(groups, in_ch, eps)
        self.conv1 = nn.Conv2d(in_ch, inner, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, inner) if temb_dim else None
        self.norm2 = GroupNorm(groups * inner // out_ch, inner, eps)
        self.conv2 = nn.Conv2d(inner, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, num_frames: int = 1) -> torch.Tensor:
        """x: [B*T, C, H, W] frames-in-batch; temb: [B, D], one per clip (broadcast over its frames)."""
        h = self.conv1(silu(self.norm1(x)))
        if self.time_proj is not None:
            n, c, hh, ww = h.shape
            proj = self.time_proj(silu(temb))
            per_clip = proj.reshape(proj.shape[0], 1, c, 1)  # a view XNNPACK takes (unsqueeze it does not)
            h = (h.reshape(n // num_frames, num_frames, c, hh * ww) + per_clip).reshape(n, c, hh, ww)
        h = self.conv2(silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Downsample(nn.Module):
    """Stride-2 3x3 conv. "bottom_right" pads one row and column after the image (the SD VAE encoder's
    Downsample2D) instead of one on every side."""

    def __init__(self, ch: int, padding: str = "symmetric"):
        super().__init__()
        if padding not in DOWNSAMPLE_PADDINGS:
            raise ValueError(f"unknown downsample padding {padding!r}; choose from {DOWNSAMPLE_PADDINGS}")
        self.pad_after = padding == "bottom_right"
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0 if self.pad_after else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.pad_after else x)


def distinct_view(x: torch.Tensor) -> torch.Tensor:
    """x as a graph node of its own (a reshape round trip), for concatenating a tensor with itself: XNNPACK's
    partitioner counts distinct inputs and leaves cat([x, x]) outside."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w).reshape(n, c, h, w)


def nearest_upsample_2x(x: torch.Tensor) -> torch.Tensor:
    """F.interpolate(x, scale_factor=2, mode="nearest") as 4-D reshapes and concatenations, which XNNPACK
    runs (it has no nearest-neighbour resize). Each cat joins two distinct views: the partitioner counts
    distinct inputs and leaves cat([x, x]) outside."""
    n, c, h, w = x.shape
    cols = torch.cat([x.reshape(n, c * h, w, 1), x.reshape(n, c * h, w, 1)], dim=3)
    rows = torch.cat([cols.reshape(n, c * h, 1, 2 * w), cols.reshape(n, c * h, 1, 2 * w)], dim=2)
    return rows.reshape(n, c, 2 * h, 2 * w)


class Upsample(nn.Module):
    """x2 upsampling then a 3x3 conv: bilinear (our own models) or nearest (SD's UNet and VAE)."""

    def __init__(self, ch: int, mode: str = "bilinear"):
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsampling {mode!r}; choose from {UPSAMPLE_MODES}")
        self.mode = mode
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return self.conv(nearest_upsample_2x(x))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[N] positions -> [N, dim] (cos, sin) features, as in DDPM/SD timestep embeddings."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = positions.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb[:, :1] * 0], dim=-1)
    return emb
