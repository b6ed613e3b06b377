"""PSNR gates between eager PyTorch and exported programs (the apple/ml-stable-diffusion habit)."""
from __future__ import annotations

import math

import numpy as np
import torch

PSNR_CAP_DB = 200.0  # identical outputs; JSON has no infinity
FP32_COMPONENT_MIN_DB = 60.0
INT8_FRAMES_MIN_DB = 30.0
INT8_COMPONENT_MIN_DB = 20.0  # each int8 program on random inputs: a broken one; the frames gate decides quality


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


def component_inputs(kind: str, spec_inputs: list[dict], vocab_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Fresh random inputs shaped like a method's inputs (ids are valid tokens with one EOS)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in spec_inputs:
        shape = s["shape"]
        if s["dtype"] == "int64":
            ids = torch.randint(3, min(vocab_size, 259), shape, generator=g)
            ids[:, 0], ids[:, shape[1] // 2] = 1, 2  # BOS, then one EOS
            ids[:, shape[1] // 2 + 1 :] = 0
            out.append(ids)
        elif s["name"] == "timestep":
            out.append(torch.rand(shape, generator=g))
        else:
            out.append(torch.randn(shape, generator=g))
    return tuple(out)
