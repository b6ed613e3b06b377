"""The spaces the supernet's dynamic cost sampler draws from, as int8 vectors with a FLOP cost each.

`TemporalSpace`: a plan's codes (an index into TEMPORAL_OPS per slot), cost = its temporal layers'
FLOPs. `ElasticSpace`: the whole space, a temporal plan and a SubNet (export.nas.elastic) in one
vector, cost = the FLOPs of that sub-network (backbone + kept slots' temporal layers) at the model's own
size; the axes left out of the space stay at the base model's plan / full width / full depth.
Resolution is no part of a vector: the trainer draws it per step (export.nas.supernet_train).

Both give the sampler the same five things: `largest`, `smallest`, `random(rng, n)` (a pool spread over the cost
range), `shrink(vector, rng)` (one step cheaper, to aim at empty cost buckets) and costs.
"""
from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import torch

from mobile_sdk.config import UNetConfig
from mobile_sdk.models import VideoUNet
from mobile_sdk.plan import TemporalPlan, unet_slots

from export.nas import genome
from export.nas.elastic import PER_LEVEL, SubNet, choices, subnet_config
from export.nas.genome import AXES

DEFAULT_SPACE = ("temporal",)


def parse_space(text: str) -> tuple[str, ...]:
    """`--space temporal,width,...` -> the axes in AXES order (the search's parser: ConfigError naming an
    unknown axis); one order, so a checkpoint's space compares equal however it was spelt."""
    named = genome.parse_space(text)
    return tuple(a for a in AXES if a in named)


def _sample_plans(rng: np.random.Generator, n: int, n_slots: int, n_ops: int) -> np.ndarray:
    """Plans spread over all costs: each keeps each slot with its own random density."""
    density = rng.random((n, 1))
    keep = rng.random((n, n_slots)) < density
    return np.where(keep, rng.integers(1, n_ops, (n, n_slots)), 0).astype(np.int8)


class TemporalSpace:
    """Plans only; cost [S, len(TEMPORAL_OPS)] = each op's FLOPs in each slot."""

    def __init__(self, cost: np.ndarray):
        self.cost = cost
        self.largest = cost.argmax(1).astype(np.int8)
        self.smallest = np.zeros_like(self.largest)

    def costs(self, vectors: np.ndarray) -> np.ndarray:
        return self.cost[np.arange(self.cost.shape[0]), vectors].sum(1)

    def cost_of(self, vector: np.ndarray) -> float:
        return self.cost[np.arange(self.cost.shape[0]), vector].sum()

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return _sample_plans(rng, n, *self.cost.shape)

    def shrink(self, vector: np.ndarray, rng: np.random.Generator) -> bool:
        """Drop one random op (in place); False when none is left."""
        if not vector.any():
            return False
        vector[rng.choice(np.flatnonzero(vector))] = 0
        return True


class ElasticSpace:
    """(plan codes [S] | per-level width, up-block and transformer-depth option [3 L] | middle block [1]):
    each SubNet field is an index into its options ordered from the largest, so 0 is the full network and
    a larger index is always cheaper."""

    def __init__(self, cfg: UNetConfig, axes: tuple[str, ...], temporal_cost: np.ndarray, base_codes: np.ndarray,
                 frames: int, latent_hw: tuple[int, int], context_len: int):
        self.cfg, self.axes, self.temporal_cost = cfg, axes, temporal_cost
        self.slots = [s.id for s in unet_slots(cfg)]
        self.base_codes = np.asarray(base_codes, np.int8)
        self.input_shape = (1, cfg.in_channels, frames, *latent_hw)
        self.context_shape = (1, context_len, cfg.cross_attention_dim)
        space = choices(cfg)
        # options of every SubNet field, largest first, in vector order
        self.options = [sorted(o, reverse=True) for name in PER_LEVEL for o in space[name]]
        self.options.append(sorted(space["mid_block"], reverse=True))
        levels = len(cfg.block_channels)
        self.free = np.zeros(len(self.slots) + len(self.options), bool)  # the positions this space varies
        self.free[:len(self.slots)] = "temporal" in axes
        self.free[len(self.slots):len(self.slots) + levels] = "width" in axes
        self.free[len(self.slots) + levels:] = "depth" in axes
        self.largest = np.concatenate([temporal_cost.argmax(1) if "temporal" in axes else self.base_codes,
                                       np.zeros(len(self.options))]).astype(np.int8)
        self.smallest = self.largest.copy()
        s = len(self.slots)
        if "temporal" in axes:
            self.smallest[:s] = 0
        self.smallest[s:] = np.where(self.free[s:], [len(o) - 1 for o in self.options], 0)

    # -- vectors <-> (plan, SubNet) ----------------------------------------------------------------------

    def decode(self, vector: np.ndarray) -> tuple[np.ndarray, SubNet]:
        """(plan codes, SubNet) of a vector."""
        s, levels = len(self.slots), len(self.cfg.block_channels)
        picked = [o[int(i)] for o, i in zip(self.options, vector[s:])]
        fields = [tuple(picked[k * levels:(k + 1) * levels]) for k in range(len(PER_LEVEL))]
        return vector[:s].copy(), SubNet(*fields, picked[-1])

    def encode(self, codes, subnet: SubNet) -> np.ndarray:
        values = [v for name in PER_LEVEL for v in getattr(subnet, name)] + [subnet.mid_block]
        return np.concatenate([np.asarray(codes), [o.index(v) for o, v in zip(self.options, values)]]).astype(np.int8)

    # -- cost ------------------------------------------------------------------------------------------

    def cost_of(self, vector: np.ndarray) -> float:
        codes, subnet = self.decode(vector)
        backbone, kept = self._subnet_cost(subnet)
        return backbone + float(self.temporal_cost[kept, codes[kept]].sum())

    def costs(self, vectors: np.ndarray) -> np.ndarray:
        return np.array([self.cost_of(v) for v in vectors])

    @functools.lru_cache(maxsize=None)
    def _subnet_cost(self, subnet: SubNet) -> tuple[float, np.ndarray]:
        """(the backbone's FLOPs without temporal layers, indices of the slots the sub-network keeps)."""
        sub = subnet_config(self.cfg, subnet)
        kept_ids = {s.id for s in unet_slots(sub)}
        kept = np.array([i for i, slot in enumerate(self.slots) if slot in kept_ids], dtype=int)
        return self._backbone_flops(subnet), kept

    def _backbone_flops(self, subnet: SubNet) -> float:
        """Additive over blocks: outer channels never shrink, so a block's FLOPs depend only on its own
        level's width and depth. The full network's count, with each block's swapped for its count in the
        probe at the sub-network's width (less its dropped transformer blocks), or removed when dropped."""
        probes = self._probes()
        total = probes[0]["Global"]
        for unit, level, kept, depth in self._units(subnet):
            total -= probes[0].get(unit, 0.0)
            if kept:
                at = probes[list(self.options[level]).index(subnet.widths[level])]
                total += at.get(unit, 0.0) - sum(at.get(f"{unit}.blocks.{k}", 0.0)
                                                 for k in range(depth, self.cfg.stage_transformer_depth(level)))
        return total

    def _units(self, subnet: SubNet):
        """(module name, level, kept, transformer depth) of every block a SubNet can shrink or drop."""
        cfg, last = self.cfg, len(self.cfg.block_channels) - 1
        for level in range(last + 1):
            d = subnet.transformer_depths[level]
            for j in range(cfg.layers_per_block):
                yield f"down.{level}.res.{j}", level, True, 0
                if cfg.attention_stages[level]:
                    yield f"down.{level}.attn.{j}", level, True, d
            for j in range(cfg.up_block_count(level)):
                yield f"up.{level}.res.{j}", level, j < subnet.up_blocks[level], 0
                if cfg.attention_stages[level]:
                    yield f"up.{level}.attn.{j}", level, j < subnet.up_blocks[level], d
        if cfg.mid_block:
            for unit in ("mid.res.0", "mid.attn.0", "mid.res.1"):
                yield unit, last, subnet.mid_block, subnet.transformer_depths[last]

    @functools.lru_cache(maxsize=None)
    def _probes(self) -> list[dict[str, float]]:
        """Per-module FLOPs of the full-depth network with every level at its i-th width option (or its
        last, where it has fewer), one meta-device pass each."""
        levels = range(len(self.cfg.block_channels))
        out = []
        for i in range(max(len(self.options[level]) for level in levels)):
            widths = tuple(self.options[level][min(i, len(self.options[level]) - 1)] for level in levels)
            probe = dataclasses.replace(SubNet.full(self.cfg), widths=widths)
            sub = dataclasses.replace(subnet_config(self.cfg, probe), temporal_plan={})
            out.append(module_flops(json.dumps(dataclasses.asdict(sub), sort_keys=True), self.input_shape,
                                    self.context_shape))
        return out

    # -- sampling --------------------------------------------------------------------------------------

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Plans as TemporalSpace draws them, each SubNet field uniform over its options."""
        s = len(self.slots)
        out = np.tile(self.largest, (n, 1))
        if "temporal" in self.axes:
            out[:, :s] = _sample_plans(rng, n, s, self.temporal_cost.shape[1])
        for j, options in enumerate(self.options):
            if self.free[s + j]:
                out[:, s + j] = rng.integers(0, len(options), n)
        return out

    def shrink(self, vector: np.ndarray, rng: np.random.Generator) -> bool:
        """One random step cheaper (in place): drop a temporal op or take a field's next smaller option."""
        s = len(self.slots)
        movable = np.flatnonzero(self.free & (vector != self.smallest))
        if not len(movable):
            return False
        i = rng.choice(movable)
        vector[i] = 0 if i < s else vector[i] + 1
        return True

    def plan(self, codes: np.ndarray) -> dict[str, str]:
        return TemporalPlan.from_codes(self.slots, codes).to_dict()


@functools.lru_cache(maxsize=None)
def module_flops(config_json: str, input_shape: tuple[int, ...], context_shape: tuple[int, ...]) -> dict[str, float]:
    """FLOPs of one UNet call of the config by module name ("Global": the whole call), counted on the
    meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from mobile_sdk.config import from_dict

    cfg = from_dict(UNetConfig, json.loads(config_json), "sub-network config")
    with torch.device("meta"):
        unet = VideoUNet(cfg)
        args = (torch.empty(input_shape), torch.empty(input_shape[0]), torch.empty(context_shape))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(*args)
    prefix = f"{type(unet).__name__}."
    return {name.removeprefix(prefix): float(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
