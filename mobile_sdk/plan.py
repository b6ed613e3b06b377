"""Temporal slots of the video UNet and temporal plans (which temporal op sits in each slot).

A slot id reads as `<stage>.<kind><index>`: `down0.res0` is after the first ResBlock of the
full-resolution down stage, `mid.attn0` after the middle transformer, `up1.res2` after the third
ResBlock of the up stage at half resolution. Up stages are numbered by resolution level, like the down
stages, so `down1` and `up1` run at the same size.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from .config import UNetConfig, read_json
from .errors import PlanError

TEMPORAL_OPS = ("none", "conv1d", "conv3d", "attn1d", "attn3d")


@dataclass(frozen=True)
class Slot:
    id: str
    stage: str  # "down0", "mid", "up0", ...
    kind: str  # "res" or "attn"
    channels: int
    level: int  # resolution level: the slot runs at latent size / 2**level


def slot_id(stage: str, kind: str, index: int) -> str:
    return f"{stage}.{kind}{index}"


def unet_slots(cfg: UNetConfig) -> list[Slot]:
    """Every temporal slot of a UNet config, in execution order (the UNet is built from the same walk)."""
    slots: list[Slot] = []
    levels = len(cfg.block_channels)
    for level, ch in enumerate(cfg.block_channels):
        for j in range(cfg.layers_per_block):
            slots.append(Slot(slot_id(f"down{level}", "res", j), f"down{level}", "res", ch, level))
            if cfg.attention_stages[level]:
                slots.append(Slot(slot_id(f"down{level}", "attn", j), f"down{level}", "attn", ch, level))
    mid_ch, mid_level = cfg.block_channels[-1], levels - 1
    if cfg.mid_block:
        slots.append(Slot("mid.res0", "mid", "res", mid_ch, mid_level))
        slots.append(Slot("mid.attn0", "mid", "attn", mid_ch, mid_level))
        slots.append(Slot("mid.res1", "mid", "res", mid_ch, mid_level))
    for level in reversed(range(levels)):
        ch = cfg.block_channels[level]
        for j in range(cfg.up_block_count(level)):
            slots.append(Slot(slot_id(f"up{level}", "res", j), f"up{level}", "res", ch, level))
            if cfg.attention_stages[level]:
                slots.append(Slot(slot_id(f"up{level}", "attn", j), f"up{level}", "attn", ch, level))
    return slots


class TemporalPlan(Mapping[str, str]):
    """A complete, validated slot -> op mapping (immutable; every slot of the config is present)."""

    def __init__(self, ops: Mapping[str, str]):
        self._ops = dict(ops)

    @classmethod
    def resolve(cls, spec: Mapping[str, str] | None, cfg: UNetConfig, source: str = "plan") -> "TemporalPlan":
        """Expand a plan spec against the config's slots.

        Globs (`down0.*`) apply first, in the order given; exact slot ids override them. Slots named by
        neither are "none". Unknown slots, unmatched globs and unknown ops are errors naming them.
        """
        ids = [s.id for s in unet_slots(cfg)]
        ops = {i: "none" for i in ids}
        spec = dict(spec or {})
        for key, op in spec.items():
            if not isinstance(op, str) or op not in TEMPORAL_OPS:
                raise PlanError(f"{source}: unknown temporal op {op!r} for slot {key!r}; valid ops: {', '.join(TEMPORAL_OPS)}")
        for key, op in spec.items():
            if _is_glob(key):
                matched = fnmatch.filter(ids, key)
                if not matched:
                    raise PlanError(f"{source}: pattern {key!r} matches no slot; slots are: {', '.join(ids)}")
                for i in matched:
                    ops[i] = op
        for key, op in spec.items():
            if not _is_glob(key):
                if key not in ops:
                    raise PlanError(f"{source}: unknown slot {key!r}; slots are: {', '.join(ids)}")
                ops[key] = op
        return cls(ops)

    def __getitem__(self, slot: str) -> str:
        return self._ops[slot]

    def __iter__(self):
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        return f"TemporalPlan({self.counts()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._ops.items())))

    def to_dict(self) -> dict[str, str]:
        return dict(self._ops)

    @classmethod
    def from_codes(cls, slots: Sequence[str], codes: Sequence[int]) -> "TemporalPlan":
        """The plan of op codes (indices into TEMPORAL_OPS), one per slot in `slots` order (the search's encoding)."""
        return cls({s: TEMPORAL_OPS[int(c)] for s, c in zip(slots, codes)})

    def codes(self, slots: Sequence[str]) -> list[int]:
        """The inverse of `from_codes`."""
        return [TEMPORAL_OPS.index(self._ops[s]) for s in slots]

    def counts(self) -> dict[str, int]:
        """How many slots use each op (ops with zero uses included, in TEMPORAL_OPS order)."""
        return {op: sum(1 for v in self._ops.values() if v == op) for op in TEMPORAL_OPS}


def _is_glob(key: str) -> bool:
    return any(ch in key for ch in "*?[")


PLAN_FORMAT = "mobile-sdk-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class StepPlans:
    """What a plan file holds: one plan spec for every denoising step, or one per step (step-aware, DDSM).

    The one type for "a plan, or one per step": expanding to steps, counting against the model's steps
    and validating against a config happen here and nowhere else.
    """

    specs: tuple[Mapping[str, str], ...]
    source: str = "plan"

    def __post_init__(self):
        if not self.specs:
            raise PlanError(f"{self.source}: no plan given")

    @classmethod
    def of(cls, plans: "StepPlans | Mapping[str, str] | Sequence[Mapping[str, str]]", source: str = "plan") -> "StepPlans":
        """From one spec (or TemporalPlan), a list of specs, or a StepPlans (returned as is)."""
        if isinstance(plans, StepPlans):
            return plans
        if isinstance(plans, Mapping):
            return cls((dict(plans),), source)
        return cls(tuple(dict(p) for p in plans), source)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> Mapping[str, str]:
        return self.specs[index]

    @property
    def step_aware(self) -> bool:
        return len(self.specs) > 1

    def per_step(self, num_steps: int) -> list[dict[str, str]]:
        """One spec per denoising step; a step-aware file must have exactly `num_steps`."""
        if not self.step_aware:
            return [dict(self.specs[0]) for _ in range(num_steps)]
        if len(self.specs) != num_steps:
            raise PlanError(f"{self.source}: {len(self.specs)} step plans for a {num_steps}-step model")
        return [dict(s) for s in self.specs]

    def resolve(self, cfg: UNetConfig) -> list[TemporalPlan]:
        """Each spec checked against the config; errors name the file (and the step)."""
        return [TemporalPlan.resolve(s, cfg, source=f"{self.source}: step {i}" if self.step_aware else self.source)
                for i, s in enumerate(self.specs)]

    def single(self, why: str) -> dict[str, str]:
        """The one plan of a non-step-aware file; `why` says why only one plan is accepted."""
        if self.step_aware:
            raise PlanError(f"{self.source}: {why}; this file has one plan per step")
        return dict(self.specs[0])

    def to_file_dict(self, **metadata) -> dict:
        """The plan file's JSON (schema mobile_sdk/contract/schemas/plan.v1.schema.json), with metadata."""
        head = {"format": PLAN_FORMAT, "version": PLAN_VERSION, **metadata}
        if not self.step_aware:
            return {**head, "slots": dict(self.specs[0])}
        return {**head, "steps": [{"slots": dict(s)} for s in self.specs]}


PlanLike = Union[StepPlans, Mapping[str, str], Sequence[Mapping[str, str]]]


def load_plan_file(path: str | Path) -> StepPlans:
    """Read and validate a plan file (schema plan.v1; files without "format"/"version" are read as v1).

    `{"slots": {slot-or-glob: op}}` is one plan for every step; `{"steps": [{"slots": ...}, ...]}` gives
    each denoising step its own plan (step-aware). Other keys, e.g. search metadata, are kept out.
    """
    from .contract.validate import validate_document

    path = Path(path)
    data = read_json(path, PlanError, "plan file")
    if not isinstance(data, dict) or not any(isinstance(data.get(k), (dict, list)) for k in ("slots", "steps")):
        raise PlanError(f'{path}: a plan file is a JSON object with a "slots" mapping of slot id (or glob) to op, '
                        f'or a "steps" list of such objects (one per denoising step)')
    validate_document(data, "plan", path, PlanError)
    if "slots" in data:
        return StepPlans((data["slots"],), str(path))
    return StepPlans(tuple(s["slots"] for s in data["steps"]), str(path))
