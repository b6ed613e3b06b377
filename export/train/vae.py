"""Stage 1: the per-frame VAE on synthetic frames (L1 + MSE reconstruction, a small KL term).

Afterwards the latent scaling factor is set so the UNet sees unit-variance latents, as in SD.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from mobile_sdk.config import ModelConfig
from mobile_sdk.models import AutoencoderKL

from export.train.common import ClipStream
from export.train.distributed import barrier, data_parallel, device, per_rank_batch, rank_and_world, shard
from export.train.loop import TrainLoop


@dataclass
class VAETrainConfig:
    steps: int = 1500
    clips_per_batch: int = 4  # x num_frames frames; global: split over the ranks of a torchrun launch
    lr: float = 5e-4
    kl_weight: float = 1e-4
    # Pixels that differ from the frame's background count this much more: the shapes cover ~5 % of a
    # frame, and an unweighted loss learns the background and washes out their colours (seen in run 1).
    object_weight: float = 10.0
    seed: int = 0
    checkpoint_every: int = 250


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


class _Posterior(nn.Module):
    """The VAE's posterior as a forward call, for DDP. The decoder is called on the VAE itself in
    the same step: its parameters belong to the same DDP module, so its gradients are averaged too."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.posterior(x)


def train_vae(model_cfg: ModelConfig, out_dir: str | Path, cfg: VAETrainConfig, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    dev = device()
    vae = AutoencoderKL(model_cfg.vae).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir, {"vae": vae}, {"opt": opt}, ("rec", "kl"), steps=cfg.steps, lr={"opt": (cfg.lr, 100)},
                     seed=cfg.seed * 1_000_003, checkpoint_every=cfg.checkpoint_every, desc="vae", progress=progress)
    stream = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, cfg.clips_per_batch, seed=cfg.seed + 1)
    per_rank_batch(cfg.clips_per_batch, "VAE clips per batch")
    posterior = data_parallel(_Posterior(vae))

    def step(k: int, g: torch.Generator) -> dict[str, float]:
        # the global batch's clips and noise (the same on every rank), then this rank's shard
        x = shard(stream.batch(k)[0]).flatten(0, 1).to(dev)
        mean, logvar = posterior(x)
        logvar = logvar.clamp(-30.0, 20.0)
        eps = shard(torch.randn((mean.shape[0] * rank_and_world()[1], *mean.shape[1:]), generator=g))
        z = mean + torch.exp(0.5 * logvar) * eps.to(dev)
        recon = vae.decoder(z) * 0.5 + 0.5
        background = x.flatten(2).median(dim=2).values[:, :, None, None]
        weight = 1.0 + (cfg.object_weight - 1.0) * ((x - background).abs().sum(dim=1, keepdim=True) > 0.1).float()
        err = recon - x
        rec = (weight * (err.abs() + err * err)).mean() / weight.mean()
        kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).mean()
        loss = rec + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"rec": rec.item(), "kl": kl.item()}

    vae.train()
    history = loop.run(step)
    vae.eval()

    # Scaling factor from held-out clips, then a held-out reconstruction PSNR.
    held_out = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, 16, seed=cfg.seed + 999)
    with torch.no_grad():
        x = held_out.batch(0)[0].flatten(0, 1).to(dev)
        mean, _ = vae.posterior(x)
        scaling = float(1.0 / mean.std())
        vae.config = replace(vae.config, scaling_factor=scaling)
        recon = vae.decode(vae.encode(x, sample=False))
    report = {
        "steps": cfg.steps,
        "train_seconds": round(loop.seconds, 1),
        "scaling_factor": scaling,
        "held_out_psnr_db": round(psnr(recon, x), 2),
        "final_rec_loss": sum(history["rec"][-50:]) / max(1, len(history["rec"][-50:])),
    }
    if loop.is_main:
        vae.save_pretrained(out_dir / "vae")
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        loop.save_loss_curve(out_dir / "loss.png", "VAE training")
    barrier()  # the teacher reads the VAE on every rank
    return report
