"""PSNR gates between eager PyTorch and exported programs (the apple/ml-stable-diffusion habit)."""
from __future__ import annotations

import math

import numpy as np
import torch

PSNR_CAP_DB = 200.0  # identical outputs; JSON has no infinity
FP32_COMPONENT_MIN_DB = 60.0
INT8_FRAMES_MIN_DB = 30.0
PALETTIZED_FRAMES_MIN_DB = 30.0  # the palettized weights' 4-step frames against fp32, as int8's
INT8_COMPONENT_MIN_DB = 20.0  # each int8 program on its test vector: a broken one; the frames gate decides quality


def psnr(reference, test, peak: float | None = None) -> float:
    """10 log10(peak^2 / MSE); peak defaults to the reference's largest magnitude."""
    ref, out = (np.asarray(x.detach().cpu().numpy() if torch.is_tensor(x) else x, dtype=np.float64)
                for x in (reference, test))
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {out.shape}")
    mse = float(np.mean((ref - out) ** 2))
    peak = float(np.abs(ref).max()) if peak is None else peak
    if mse == 0.0 or peak == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(peak * peak / mse))
