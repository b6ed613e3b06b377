"""Latency and memory of a plan (or per-step plans) from a latency table: vectorised for the search.

Model (additive, with a per-call correction): every table entry was measured as its own program, so
each includes one program invocation (`runtime.call`). A real UNet call is one invocation, so

    unet_call_ms = call + sum over its blocks of (block - call)
    step_ms      = unet_calls_per_step * unet_call_ms            (2 with CFG: programs are batch 1)
    denoise_ms   = sum over steps of step_ms(plan of that step)
    end_to_end   = text_encoder + denoise + decoder_calls * vae_decoder

A table may carry a measured correction (`header.calibration.unet_call_scale`, fitted by `mobile-sdk
profile calibrate` on whole-UNet programs) for what the sum of blocks misses; it scales unet_call_ms.
Each entry's time is its `mean_ms`, or the statistic the calibration names (`p10_ms`: robust to other
load on the device, see profiling/validate.py); a calibration applies only to the statistic it was fitted on.

Memory: the programs stay loaded, so peak = runtime baseline + all weights (every backbone block use its
own; temporal weights counted once per slot and op, as the step-aware export shares them) + the largest
working set of any block (its measured peak minus its weights minus the baseline).

Plans are encoded as int arrays over the slots (index into TEMPORAL_OPS): [N, S] or [N, steps, S].
`ElasticPredictor` does the same for whole-space genomes (plan + sub-network + resolution, export.nas.genome).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mobile_sdk.plan import TEMPORAL_OPS, PlanLike, StepPlans, TemporalPlan

from export.nas.latency_table import LatencyTable, TableError
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


def table_statistic(table: LatencyTable) -> str:
    """The entry field predictions read: the one the table's calibration was fitted with (`p10_ms` since
    `profile calibrate` compares like with like under contention, see profiling/validate.py), else `mean_ms`."""
    return (table.header.get("calibration") or {}).get("statistic", "mean_ms")


class LatencyPredictor:
    def __init__(self, table: LatencyTable, blocks: ModelBlocks, source: str = "table", calibrated: bool = True,
                 statistic: str | None = None):
        self.table, self.blocks, self.source = table, blocks, source
        self.statistic = statistic or table_statistic(table)
        calibration = table.header.get("calibration") if calibrated else None
        self.calibrated = bool(calibration) and table_statistic(table) == self.statistic  # fitted on this statistic
        self.unet_scale = calibration["unet_call_scale"] if self.calibrated else 1.0
        e = {sig: getattr(entry, self.statistic) for sig, entry in table.entries.items()}
        entries = table.entries
        fixed = [*blocks.backbone, blocks.text_encoder, blocks.vae_decoder, CALL_SIGNATURE]
        table.require(fixed, source)
        call = entries[CALL_SIGNATURE]
        self.call_ms = e[CALL_SIGNATURE]
        baseline = call.peak_memory_bytes

        def net_ms(sig: str) -> float:
            return max(0.0, e[sig] - self.call_ms)

        def working_set(sig: str) -> float:
            return max(0.0, entries[sig].peak_memory_bytes - entries[sig].weight_bytes - baseline)

        self.unet_base_ms = self.call_ms + sum(n * net_ms(s) for s, n in blocks.backbone.items())
        self.text_encoder_ms = e[blocks.text_encoder]
        self.vae_decoder_ms = e[blocks.vae_decoder]
        fixed_components = [blocks.text_encoder, blocks.vae_decoder]
        self.baseline_bytes = baseline
        self.component_weight_bytes = sum(entries[s].weight_bytes for s in fixed_components)
        self.backbone_weight_bytes = sum(n * entries[s].weight_bytes for s, n in blocks.backbone.items())  # each use its own
        self.base_weight_bytes = baseline + self.component_weight_bytes + self.backbone_weight_bytes
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
                self.slot_ms[i, j], self.slot_weights[i, j], self.slot_ws[i, j] = net_ms(sig), entries[sig].weight_bytes, working_set(sig)
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


class ElasticPredictor:
    """Latency and peak memory of whole-space genomes (export.nas.genome): temporal plan, sub-network and
    resolution, one row per step or one for every step. Each (sub-network, resolution) is an ordinary
    model whose decomposition `ElasticBlocks.of` composes from the table's shared entries; its UNet call
    is that model's `LatencyPredictor` (the same formula as above, one source of truth).

    Memory: the step's programs all stay loaded, so weights are the runtime baseline, the text encoder and
    VAE decoder, each distinct sub-network's backbone once (separate methods hold separate slices), each
    (slot, op) temporal layer once (shared, as today), plus the largest working set of any block used."""

    def __init__(self, table: LatencyTable, blocks, space, source: str = "table", calibrated: bool = True,
                 statistic: str | None = None):
        self.table, self.blocks, self.space, self.source, self.calibrated = table, blocks, space, source, calibrated
        self.statistic = statistic
        self.steps = blocks.config.scheduler.num_inference_steps
        self._parts: dict[bytes, tuple[LatencyPredictor, np.ndarray]] = {}
        self._rows: dict[bytes, float] = {}
        for resolution in space.options[space.resolution_gene]:  # a resolution the table lacks fails here
            self.part(self._row_at(resolution))
        self.calls_per_step = self.part(space.default_row())[0].calls_per_step

    def _row_at(self, resolution) -> np.ndarray:
        row = self.space.default_row()
        row[self.space.resolution_gene] = self.space.options[self.space.resolution_gene].index(resolution)
        return row

    def part(self, row: np.ndarray) -> tuple[LatencyPredictor, np.ndarray]:
        """(the predictor of this row's sub-network at its resolution, the full-slot index of each of its slots)."""
        s = len(self.space.slots)
        key = np.asarray(row[s:], np.int8).tobytes()
        if key not in self._parts:
            subnet, (h, w) = self.space.subnet(row), self.space.resolution(row)
            mb = self.blocks.of(subnet, (h, w))
            missing = {*mb.backbone, mb.text_encoder, mb.vae_decoder, CALL_SIGNATURE} - set(self.table.entries)
            if missing:
                raise TableError(f"{self.source}: the table lacks {len(missing)} entries of resolution {h}x{w}, "
                                 f"sub-network {subnet.to_dict()} (e.g. {sorted(missing)[0]}); profile it with the "
                                 f"elastic blocks at this resolution")
            pred = LatencyPredictor(self.table, mb, self.source, self.calibrated, self.statistic)
            index = np.array([self.space.slots.index(x) for x in mb.slots], np.int64)
            self._parts[key] = (pred, index)
        return self._parts[key]

    def unet_call_ms(self, row: np.ndarray) -> float:
        key = np.asarray(row, np.int8).tobytes()
        if key not in self._rows:
            pred, index = self.part(row)
            self._rows[key] = float(pred.unet_call_ms(self.space.temporal_codes(row)[index]))
        return self._rows[key]

    def denoise_ms(self, genomes: np.ndarray) -> np.ndarray:
        """[N, steps, genes] -> [N] ms of the whole denoising loop."""
        return np.array([self.calls_per_step * sum(self.unet_call_ms(r) for r in g) for g in genomes])

    def end_to_end_ms(self, genomes: np.ndarray) -> np.ndarray:
        first = [self.part(g[0])[0] for g in genomes]
        return np.array([p.text_encoder_ms + p.blocks.decoder_calls * p.vae_decoder_ms for p in first]) + self.denoise_ms(genomes)

    def peak_memory_bytes(self, genomes: np.ndarray) -> np.ndarray:
        """[N, steps, genes] -> [N] (see the class docstring)."""
        out = []
        for g in genomes:
            parts = {np.asarray(r[len(self.space.slots):], np.int8).tobytes(): r for r in g}
            preds = [self.part(r)[0] for r in parts.values()]
            weights = preds[0].baseline_bytes + preds[0].component_weight_bytes + sum(p.backbone_weight_bytes for p in preds)
            ws = max(p.base_working_set for p in preds)
            temporal: dict[tuple[int, int], float] = {}
            for r in g:
                pred, index = self.part(r)
                codes = self.space.temporal_codes(r)[index]
                for i, c in enumerate(codes):
                    if c:
                        temporal[(int(index[i]), int(c))] = pred.slot_weights[i, c]
                        ws = max(ws, pred.slot_ws[i, c])
            out.append(weights + sum(temporal.values()) + ws)
        return np.array(out)

    def predict(self, genome: np.ndarray) -> Prediction:
        """One genome ([genes] or [G, genes], G = 1 or steps)."""
        g = np.atleast_2d(genome)
        g = np.repeat(g, self.steps, 0) if len(g) == 1 else g
        first = self.part(g[0])[0]
        per_step = [self.calls_per_step * self.unet_call_ms(r) for r in g]
        return Prediction(unet_step_ms=per_step, denoise_ms=float(sum(per_step)), text_encoder_ms=first.text_encoder_ms,
                          vae_decoder_ms=first.blocks.decoder_calls * first.vae_decoder_ms,
                          end_to_end_ms=float(self.end_to_end_ms(g[None])[0]),
                          peak_memory_bytes=int(self.peak_memory_bytes(g[None])[0]))
