"""Speed of one UNet denoising step of the `small` preset in eager PyTorch (CPU).

Run: pytest tests/benchmarks --benchmark-only
"""
import torch

from mobile_sdk.config import load_preset
from mobile_sdk.models import VideoUNet


def test_small_unet_step_eager(benchmark):
    cfg = load_preset("small")
    unet = VideoUNet(cfg.unet).eval()
    f = cfg.vae.downsample_factor
    x = torch.randn(1, cfg.unet.in_channels, cfg.num_frames, cfg.height // f, cfg.width // f)
    t = torch.tensor([0.5])
    ctx = torch.randn(1, cfg.text_encoder.max_length, cfg.unet.cross_attention_dim)
    benchmark.extra_info.update(preset="small", frames=cfg.num_frames, latent_hw=[x.shape[-2], x.shape[-1]])
    with torch.no_grad():
        out = benchmark(unet, x, t, ctx)
    assert out.shape == x.shape
