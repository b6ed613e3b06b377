"""Stage 1: the per-frame VAE on synthetic frames (L1 + MSE reconstruction, a small KL term).

Afterwards the latent scaling factor is set so the UNet sees unit-variance latents, as in SD.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mobile_sdk.config import ModelConfig
from mobile_sdk.models import AutoencoderKL

from .common import Checkpointer, ClipStream, Timer, lr_at, save_loss_curve


@dataclass
class VAETrainConfig:
    steps: int = 1500
    clips_per_batch: int = 4  # x num_frames frames
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


def train_vae(model_cfg: ModelConfig, out_dir: str | Path, cfg: VAETrainConfig, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(model_cfg.vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    ckpt = Checkpointer(out_dir)
    state = ckpt.load({"vae": vae}, {"opt": opt}) or {"step": 0, "seconds": 0.0, "history": {"rec": [], "kl": []}}
    stream = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, cfg.clips_per_batch, seed=cfg.seed + 1)
    timer = Timer(state["seconds"])
    vae.train()
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps, desc="vae", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, 100, cfg.steps)
        clips, _ = stream.batch(step)
        x = clips.flatten(0, 1)
        mean, logvar = vae.posterior(x)
        logvar = logvar.clamp(-30.0, 20.0)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # per-step noise: resume is exact
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
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
        state["history"]["rec"].append(rec.item())
        state["history"]["kl"].append(kl.item())
        bar.set_postfix(rec=f"{rec.item():.4f}", kl=f"{kl.item():.2f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            state.update(step=step + 1, seconds=timer.seconds)
            ckpt.save({"vae": vae}, {"opt": opt}, state)
    vae.eval()

    # Scaling factor from held-out clips, then a held-out reconstruction PSNR.
    held_out = ClipStream(model_cfg.height, model_cfg.width, model_cfg.num_frames, 16, seed=cfg.seed + 999)
    with torch.no_grad():
        x = held_out.batch(0)[0].flatten(0, 1)
        mean, _ = vae.posterior(x)
        scaling = float(1.0 / mean.std())
        vae.config = replace(vae.config, scaling_factor=scaling)
        recon = vae.decode(vae.encode(x, sample=False))
    report = {
        "steps": cfg.steps,
        "train_seconds": round(timer.seconds, 1),
        "scaling_factor": scaling,
        "held_out_psnr_db": round(psnr(recon, x), 2),
        "final_rec_loss": sum(state["history"]["rec"][-50:]) / max(1, len(state["history"]["rec"][-50:])),
    }
    vae.save_pretrained(out_dir / "vae")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_loss_curve(state["history"], out_dir / "loss.png", "VAE training")
    return report
