"""Latency and memory of a plan (or per-step plans) from a latency table: vectorised for the search.

Model (additive, with a per-call correction): every table entry was measured as its own program, so
each includes one program invocation (`runtime.call`). A real UNet call is one invocation, so

    unet_call_ms = call + sum over its blocks of (block - call)
    step_ms      = unet_calls_per_step * unet_call_ms            (2 with CFG: programs are batch 1)
    denoise_ms   = sum over steps of step_ms(plan of that step)
    end_to_end   = text_encoder + denoise + decoder_calls * vae_decoder

A table may carry a measured correction (`header.calibration.unet_call_scale`, fitted by `mobile-sdk
profile calibrate` on whole-UNet programs) for what the sum of blocks misses; it scales unet_call_ms.

Memory: the programs stay loaded, so peak = runtime baseline + all weights (temporal weights counted
once per slot and op, as the step-aware export shares them) + the largest working set of any block
(its measured peak minus its weights minus the baseline).

Plans are encoded as int arrays over the slots (index into TEMPORAL_OPS): [N, S] or [N, steps, S].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mobile_sdk.plan import TEMPORAL_OPS, PlanLike, StepPlans, TemporalPlan

from export.nas.latency_table import LatencyTable
from export.nas.model_blocks import CALL_SIGNATURE, ModelBlocks


@dataclass(frozen=True)
class Prediction:
    unet_step_ms: list[float]  # per denoising step
    denoise_ms: float
    text_encoder_ms: float
    vae_decoder_ms: float
    end_to_end_ms: float
    peak_memory_bytes: int

    def to_dict(self) -> dict:
        return {"unet_step_ms": [round(x, 4) for x in self.unet_step_ms], "denoise_ms": round(self.denoise_ms, 4),
                "text_encoder_ms": round(self.text_encoder_ms, 4), "vae_decoder_ms": round(self.vae_decoder_ms, 4),
                "end_to_end_ms": round(self.end_to_end_ms, 4), "peak_memory_bytes": int(self.peak_memory_bytes),
                "peak_memory_mb": round(self.peak_memory_bytes / 2**20, 2)}


class LatencyPredictor:
    def __init__(self, table: LatencyTable, blocks: ModelBlocks, source: str = "table", calibrated: bool = True):
        self.table, self.blocks, self.source = table, blocks, source
        calibration = table.header.get("calibration") if calibrated else None
        self.unet_scale = calibration["unet_call_scale"] if calibration else 1.0
        e = table.entries
        fixed = [*blocks.backbone, blocks.text_encoder, blocks.vae_decoder, CALL_SIGNATURE]
        table.require(fixed, source)
        call = e[CALL_SIGNATURE]
        self.call_ms = call.mean_ms
        baseline = call.peak_memory_bytes

        def net_ms(sig: str) -> float:
            return max(0.0, e[sig].mean_ms - self.call_ms)

        def working_set(sig: str) -> float:
            return max(0.0, e[sig].peak_memory_bytes - e[sig].weight_bytes - baseline)

        self.unet_base_ms = self.call_ms + sum(n * net_ms(s) for s, n in blocks.backbone.items())
        self.text_encoder_ms = e[blocks.text_encoder].mean_ms
        self.vae_decoder_ms = e[blocks.vae_decoder].mean_ms
        fixed_components = [blocks.text_encoder, blocks.vae_decoder]
        self.base_weight_bytes = baseline + sum(e[s].weight_bytes for s in [*blocks.backbone, *fixed_components])
        self.base_working_set = max(working_set(s) for s in [*blocks.backbone, *fixed_components])

        shape = (len(blocks.slots), len(TEMPORAL_OPS))
        self.slot_ms, self.slot_weights, self.slot_ws = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self.missing: dict[tuple[int, int], str] = {}
        for i, slot in enumerate(blocks.slots):
            for op, sig in blocks.temporal[slot].items():
                j = TEMPORAL_OPS.index(op)
                if sig not in e:
                    self.missing[(i, j)] = sig
                    self.slot_ms[i, j] = np.nan
                    continue
                self.slot_ms[i, j], self.slot_weights[i, j], self.slot_ws[i, j] = net_ms(sig), e[sig].weight_bytes, working_set(sig)
        self.steps, self.calls_per_step = blocks.steps, blocks.unet_calls_per_step
        self._slot_index = np.arange(len(blocks.slots))

    # -- encoding -------------------------------------------------------------------------------------

    def encode(self, plan: Mapping[str, str]) -> np.ndarray:
        resolved = plan if isinstance(plan, TemporalPlan) else TemporalPlan.resolve(plan, self.blocks.config.unet)
        return np.array(resolved.codes(self.blocks.slots), dtype=np.int8)

    def encode_steps(self, plans: PlanLike) -> np.ndarray:
        """One plan (used for every step) or one per step -> [steps, S]."""
        return np.stack([self.encode(p) for p in StepPlans.of(plans, self.source).per_step(self.steps)])

    # -- vectorised core ------------------------------------------------------------------------------

    def unet_call_ms(self, codes: np.ndarray) -> np.ndarray:
        """[..., S] plan codes -> [...] ms of one UNet program call."""
        self._check(codes)
        return self.unet_scale * (self.unet_base_ms + self.slot_ms[self._slot_index, codes].sum(-1))

    def denoise_ms(self, step_codes: np.ndarray) -> np.ndarray:
        """[N, steps, S] -> [N] ms of the whole denoising loop."""
        return self.calls_per_step * self.unet_call_ms(step_codes).sum(-1)

    def end_to_end_ms(self, step_codes: np.ndarray) -> np.ndarray:
        return self.text_encoder_ms + self.denoise_ms(step_codes) + self.blocks.decoder_calls * self.vae_decoder_ms

    def peak_memory_bytes(self, step_codes: np.ndarray) -> np.ndarray:
        """[N, steps, S] -> [N]: all weights (each slot/op once) plus the largest working set."""
        self._check(step_codes)
        n, _, s = step_codes.shape
        used = np.zeros((n, s, len(TEMPORAL_OPS)), dtype=bool)
        used[np.arange(n)[:, None, None], self._slot_index, step_codes] = True
        used[..., 0] = False
        weights = (used * self.slot_weights).sum((1, 2))
        ws = np.maximum(self.base_working_set, (used * self.slot_ws).max((1, 2)))
        return self.base_weight_bytes + weights + ws

    def _check(self, codes: np.ndarray) -> None:
        if not self.missing:
            return
        flat = codes.reshape(-1, codes.shape[-1])
        needed = {self.missing[(i, int(j))] for i in range(flat.shape[1]) for j in np.unique(flat[:, i])
                  if (i, int(j)) in self.missing}
        if needed:
            self.table.require(needed, self.source)

    # -- one plan -------------------------------------------------------------------------------------

    def predict(self, plans: PlanLike) -> Prediction:
        codes = self.encode_steps(plans)[None]
        per_step = (self.calls_per_step * self.unet_call_ms(codes[0])).tolist()
        denoise = float(self.denoise_ms(codes)[0])
        return Prediction(unet_step_ms=per_step, denoise_ms=denoise, text_encoder_ms=self.text_encoder_ms,
                          vae_decoder_ms=self.blocks.decoder_calls * self.vae_decoder_ms,
                          end_to_end_ms=float(self.end_to_end_ms(codes)[0]),
                          peak_memory_bytes=int(self.peak_memory_bytes(codes)[0]))
