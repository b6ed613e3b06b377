"""Predicted vs measured latency for random plans (or given plan files): is the table, and the
predictor's model, any good?

Each plan's whole UNet is lowered like `mobile-sdk export` and timed with the same runner as the table
entries; the text encoder and VAE decoder programs are timed once. Measured end-to-end is
text encoder + steps x UNet (x2 with CFG) + frames x decoder, the same composition the predictor uses,
so the error is the error of adding up blocks, not of a different pipeline.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from export.nas.latency_table import LatencyTable
from export.nas.model_blocks import ModelBlocks
from export.nas.efficiency_predictor import LatencyPredictor
from mobile_sdk.atomic import atomic_file
from mobile_sdk.models import AutoencoderKL, TextEncoder, VAEDecoder, VideoUNet
from mobile_sdk.plan import TEMPORAL_OPS, StepPlans, TemporalPlan

from .microbench import lower_to_file
from .runner import measure_interleaved, summarize


def random_plans(blocks: ModelBlocks, n: int, seed: int, preset_plan_first: bool = True) -> list[dict[str, str]]:
    """Uniformly random ops per slot (seeded), after the preset's own plan unless told otherwise."""
    rng = np.random.default_rng(seed)
    plans = [TemporalPlan.resolve(blocks.config.unet.temporal_plan, blocks.config.unet).to_dict()] if preset_plan_first else []
    while len(plans) < n:
        plans.append({s: TEMPORAL_OPS[int(rng.integers(len(TEMPORAL_OPS)))] for s in blocks.slots})
    return plans[:n]


def _ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas * 100


class PlanMeter:
    """Lowers whole components like `mobile-sdk export` (cached in `out/programs/` by plan), then times
    them all together in interleaved rounds with the table's runner settings."""

    def __init__(self, blocks: ModelBlocks, device, out: Path, quantize: str, threads: int, warmup: int, runs: int,
                 rounds: int, seed: int = 0):
        self.blocks, self.device, self.dir, self.quantize = blocks, device, Path(out) / "programs", quantize
        self.settings = (warmup, runs, threads, rounds)
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = blocks.config
        f = cfg.vae.downsample_factor
        self.latent_hw = (cfg.height // f, cfg.width // f)
        g = torch.Generator().manual_seed(seed)
        self.unet_inputs = (torch.randn(1, cfg.unet.in_channels, cfg.num_frames, *self.latent_hw, generator=g),
                            torch.tensor([0.5]), torch.randn(1, cfg.text_encoder.max_length, cfg.unet.cross_attention_dim, generator=g))
        self.programs: dict[str, Path] = {}

    def add_unet(self, spec: dict) -> str:
        plan = TemporalPlan.resolve(spec, self.blocks.config.unet).to_dict()
        key = "unet_" + hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
        if key not in self.programs:
            unet = VideoUNet(self.blocks.config.unet, plan=plan)
            self.programs[key] = lower_to_file(self.dir / f"{key}.pte", unet, self.unet_inputs, self.quantize)
        return key

    def add_components(self) -> tuple[str, str]:
        te, vae = self.blocks.config.text_encoder, self.blocks.config.vae
        self.programs["text_encoder"] = lower_to_file(self.dir / "text_encoder.pte", TextEncoder(te),
                                                  (torch.full((1, te.max_length), 3),), self.quantize)
        self.programs["vae_decoder"] = lower_to_file(self.dir / "vae_decoder.pte", VAEDecoder(AutoencoderKL(vae)),
                                                 (torch.rand(1, vae.latent_channels, *self.latent_hw),), self.quantize)
        return "text_encoder", "vae_decoder"

    def measure(self, progress: bool) -> dict[str, float]:
        """key -> ms (median over rounds of trimmed means), all programs interleaved."""
        warmup, runs, threads, rounds = self.settings
        results = measure_interleaved(self.device, self.programs, warmup, runs, threads, rounds, progress=progress)
        return {k: summarize([r["times_ms"] for r in v])["mean_ms"] for k, v in results.items()}


def _meter(blocks, table, device, out, seed=0) -> PlanMeter:
    m = table.header["measurement"]
    return PlanMeter(blocks, device, out, table.header["quantize"], table.header["threads"], m["warmup"], m["runs"],
                     m.get("rounds", 1), seed)


def calibrate(blocks: ModelBlocks, table: LatencyTable, device, out_dir: str | Path, *, n_plans: int = 8,
              seed: int = 1000, progress: bool = True, log=print) -> dict:
    """Fit what adding blocks up misses: one scale on the UNet call, the median of measured / additive
    over `n_plans` random whole-UNet programs (a seed apart from validate's, so validation stays honest).
    Returns the header's "calibration" section; the caller saves the table."""
    meter = _meter(blocks, table, device, out_dir)
    additive = LatencyPredictor(table, blocks, calibrated=False)
    plans = random_plans(blocks, n_plans, seed, preset_plan_first=False)
    keys = [meter.add_unet(p) for p in tqdm(plans, desc="lowering calibration plans", disable=not progress)]
    ms = meter.measure(progress)
    ratios = [ms[k] / (additive.predict(p).unet_step_ms[0] / blocks.unet_calls_per_step) for k, p in zip(keys, plans)]
    section = {"unet_call_scale": float(np.median(ratios)), "plans": n_plans, "seed": seed,
               "ratios": [round(r, 4) for r in ratios],
               "method": "median over random plans of measured whole-UNet program / sum of table entries"}
    log(f"calibration: UNet call scale {section['unet_call_scale']:.3f} (ratios {min(ratios):.3f}..{max(ratios):.3f}, {n_plans} plans)")
    return section


def validate(blocks: ModelBlocks, table: LatencyTable, device, out_dir: str | Path, *, n_plans: int = 20,
             plans: list[StepPlans] | None = None, seed: int = 0, progress: bool = True, log=print) -> dict:
    out = Path(out_dir)
    meter = _meter(blocks, table, device, out, seed)
    predictor, additive = LatencyPredictor(table, blocks), LatencyPredictor(table, blocks, calibrated=False)
    te_key, vae_key = meter.add_components()
    candidates = [StepPlans.of(p) for p in plans] if plans else [StepPlans.of(p) for p in random_plans(blocks, n_plans, seed)]
    expanded = [p.per_step(blocks.steps) for p in candidates]
    keys = [[meter.add_unet(spec) for spec in specs] for specs in tqdm(expanded, desc="lowering plans", disable=not progress)]
    ms = meter.measure(progress)
    te_ms, vae_ms = ms[te_key], ms[vae_key]
    rows = []
    for spec_list, specs, step_keys in zip(candidates, expanded, keys):
        per_step = [ms[k] for k in step_keys]
        calls = blocks.unet_calls_per_step
        pred, plain = predictor.predict(specs), additive.predict(specs)
        rows.append({"plans": [dict(s) for s in spec_list.specs],
                     "measured_unet_call_ms": float(np.mean(per_step)),
                     "predicted_unet_call_ms": float(np.mean(pred.unet_step_ms)) / calls,
                     "additive_unet_call_ms": float(np.mean(plain.unet_step_ms)) / calls,
                     "measured_denoise_ms": calls * sum(per_step), "predicted_denoise_ms": pred.denoise_ms,
                     "measured_end_to_end_ms": te_ms + calls * sum(per_step) + blocks.decoder_calls * vae_ms,
                     "predicted_end_to_end_ms": pred.end_to_end_ms})

    def stats(key: str, pred_key: str) -> dict:
        err = _ape(np.array([r[pred_key] for r in rows]), np.array([r[key] for r in rows]))
        return {"median": float(np.median(err)), "p90": float(np.percentile(err, 90))}

    report = {
        "table": table.describe(), "preset": table.header["preset"], "plans": len(rows), "seed": seed,
        "calibration": table.header.get("calibration"),
        "text_encoder_ms": {"measured": te_ms, "predicted": predictor.text_encoder_ms},
        "vae_decoder_ms": {"measured": vae_ms, "predicted": predictor.vae_decoder_ms},
        "unet_call_ape_percent": stats("measured_unet_call_ms", "predicted_unet_call_ms"),
        "unet_call_additive_ape_percent": stats("measured_unet_call_ms", "additive_unet_call_ms"),
        "end_to_end_ape_percent": stats("measured_end_to_end_ms", "predicted_end_to_end_ms"),
        "rows": rows,
    }
    with atomic_file(out / "validate.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    _scatter(rows, report, out / "validate.png")
    u, a, e = report["unet_call_ape_percent"], report["unet_call_additive_ape_percent"], report["end_to_end_ape_percent"]
    log(f"UNet call: median APE {u['median']:.1f}%, p90 {u['p90']:.1f}% (plain sum of entries: {a['median']:.1f}% / "
        f"{a['p90']:.1f}%); end-to-end: median {e['median']:.1f}%, p90 {e['p90']:.1f}% ({len(rows)} plans) -> {out / 'validate.png'}")
    return report


def _scatter(rows: list[dict], report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, title in ((axes[0], "unet_call", "one UNet call"), (axes[1], "end_to_end", "end to end")):
        m = np.array([r[f"measured_{key}_ms"] for r in rows])
        p = np.array([r[f"predicted_{key}_ms"] for r in rows])
        lo, hi = min(m.min(), p.min()) * 0.95, max(m.max(), p.max()) * 1.05
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.scatter(m, p, s=18)
        err = report[f"{key}_ape_percent"]
        ax.set(xlabel="measured (ms)", ylabel="predicted (ms)",
               title=f"{title}: median APE {err['median']:.1f}%, p90 {err['p90']:.1f}%")
    fig.suptitle(report["table"], fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
