"""SD-VAE-style autoencoder applied per frame: 3 RGB channels <-> `latent_channels`, x8 in each side.

`decode` goes all the way from the UNet's (scaled) latents to RGB in [0, 1], so an exported decoder
needs no pre/post-processing in the app beyond x255.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import VAEConfig
from .layers import Attention, Downsample, GroupNorm, ResBlock, Upsample, silu
from .pretrained import PretrainedMixin


class MidAttention(nn.Module):
    """Single-head self-attention over all pixels of a frame, residual (the VAE's middle block)."""

    def __init__(self, ch: int, groups: int, qkv_bias: bool = False):
        super().__init__()
        self.norm = GroupNorm(groups, ch, eps=1e-6)
        self.attn = Attention(ch, head_dim=ch, qkv_bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x).reshape(n, c, h * w).permute(0, 2, 1)
        return x + self.attn(tokens).permute(0, 2, 1).reshape(n, c, h, w)


class MidBlock(nn.Module):
    def __init__(self, ch: int, groups: int, qkv_bias: bool = False):
        super().__init__()
        self.res0 = ResBlock(ch, ch, groups, eps=1e-6)
        self.attn = MidAttention(ch, groups, qkv_bias)
        self.res1 = ResBlock(ch, ch, groups, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.attn(self.res0(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = cfg.block_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, chs[0], 3, padding=1)
        blocks: list[nn.Module] = []
        ch = chs[0]
        for level, out_ch in enumerate(chs):
            for _ in range(cfg.layers_per_block):
                blocks.append(ResBlock(ch, out_ch, cfg.norm_groups, eps=1e-6))
                ch = out_ch
            if level < len(chs) - 1:
                blocks.append(Downsample(ch, cfg.downsample_padding))
        self.blocks = nn.ModuleList(blocks)
        self.mid = MidBlock(ch, cfg.norm_groups, cfg.attention_bias)
        self.norm_out = GroupNorm(cfg.norm_groups, ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(silu(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = list(reversed(cfg.block_channels))
        ch = chs[0]
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch, 3, padding=1)
        self.mid = MidBlock(ch, cfg.norm_groups, cfg.attention_bias)
        blocks: list[nn.Module] = []
        for level, out_ch in enumerate(chs):
            for _ in range(cfg.layers_per_block + 1):
                blocks.append(ResBlock(ch, out_ch, cfg.norm_groups, eps=1e-6))
                ch = out_ch
            if level < len(chs) - 1:
                blocks.append(Upsample(ch, cfg.upsample))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = GroupNorm(cfg.norm_groups, ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for block in self.blocks:
            x = block(x)
        return self.conv_out(silu(self.norm_out(x)))


class AutoencoderKL(PretrainedMixin, nn.Module):
    config_class = VAEConfig
    component = "vae"

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        moments, latents = 2 * config.latent_channels, config.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if config.quant_conv else None
        self.post_quant_conv = nn.Conv2d(latents, latents, 1) if config.post_quant_conv else None

    def _moments(self, images: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(images * 2.0 - 1.0)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        """RGB [N, 3, H, W] in [0, 1] -> scaled latents [N, C, H/8, W/8] (a posterior sample, or its mean)."""
        mean, logvar = self._moments(images).chunk(2, dim=1)
        z = mean
        if sample:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            z = mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return z * self.config.scaling_factor

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the unscaled latent posterior, for the VAE's own KL training term."""
        return self._moments(images).chunk(2, dim=1)

    def decode_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, C, h, w] -> the decoder's output [N, 3, 8h, 8w], nominally in [-1, 1]."""
        z = latents / self.config.scaling_factor
        return self.decoder(z if self.post_quant_conv is None else self.post_quant_conv(z))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, C, h, w] -> RGB [N, 3, 8h, 8w] in [0, 1]."""
        return (self.decode_unclamped(latents) * 0.5 + 0.5).clamp(0.0, 1.0)


class VAEDecoder(nn.Module):
    """The decode path alone, as the module that gets exported (weights shared with the autoencoder)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)
