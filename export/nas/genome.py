"""The whole search space as compact integer genomes (once-for-all style): {temporal plan, SubNet, resolution}.

One genome row is a vector of small ints, one gene per choice, each an index into that gene's options:

    [ op per slot (S) | width per level (L) | up blocks per level (L) | transformer depth per level (L) |
      mid block (1) | resolution (1) ]

A search genome is [G, genes]: G = 1 (one sub-network for every step) or one row per denoising step
(step-aware, DDSM). The resolution gene is *shared*: every row holds the same value, because the latent
keeps its size through the denoising loop (the apps only do `x += dt * v`). Axes left out of the space
(`--space`) keep one option: the model's own plan, the full widths, every block, the first resolution.
A slot whose block a sub-network drops has no temporal layer; its gene is ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mobile_sdk.config import UNetConfig
from mobile_sdk.errors import ConfigError
from mobile_sdk.plan import TEMPORAL_OPS, TemporalPlan, unet_slots

from export.nas.elastic import SubNet, choices, subnet_config

AXES = ("temporal", "width", "depth", "resolution")
SUBNET_FIELDS = ("widths", "up_blocks", "transformer_depths")  # per level, in gene order


def parse_space(text: str) -> tuple[str, ...]:
    """`temporal,width,...` -> the axes (ConfigError naming an unknown one)."""
    axes = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in axes if a not in AXES]
    if unknown or not axes:
        raise ConfigError(f"--space {text!r}: unknown axis {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"choose from {', '.join(AXES)}")
    return axes


def parse_resolution(text: str) -> tuple[int, int]:
    """`64` or `64x48` (pixels, height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise ConfigError(f"resolution {text!r}: expected HEIGHTxWIDTH or SIZE in pixels, e.g. 64x64")
    return (parts[0], parts[-1])


@dataclass
class GenomeSpace:
    unet: UNetConfig  # the full model's (its temporal_plan is the plan used when temporal is not searched)
    resolutions: tuple[tuple[int, int], ...]  # the first is used when resolution is not searched
    axes: tuple[str, ...]
    slots: list[str] = field(init=False)
    options: list[tuple] = field(init=False)  # per gene: its values
    names: list[str] = field(init=False)  # per gene, for reports

    def __post_init__(self):
        unknown = [a for a in self.axes if a not in AXES]
        if unknown:
            raise ConfigError(f"unknown search axis {unknown[0]!r}; choose from {', '.join(AXES)}")
        u = self.unet
        self.slots = [s.id for s in unet_slots(u)]
        base = TemporalPlan.resolve(u.temporal_plan, u)
        space = choices(u)
        full = SubNet.full(u)
        free = set(self.axes)
        opts: list[tuple] = [tuple(TEMPORAL_OPS) if "temporal" in free else (base[s],) for s in self.slots]
        names = [f"op[{s}]" for s in self.slots]
        for name, axis in zip(SUBNET_FIELDS, ("width", "depth", "depth")):
            for level, values in enumerate(space[name]):
                opts.append(tuple(values) if axis in free else (getattr(full, name)[level],))
                names.append(f"{name}[{level}]")
        opts.append(tuple(space["mid_block"]) if "depth" in free else (full.mid_block,))
        opts.append(self.resolutions if "resolution" in free else self.resolutions[:1])
        self.options, self.names = opts, names + ["mid_block", "resolution"]
        self._subnets: dict[bytes, SubNet] = {}

    # -- layout ---------------------------------------------------------------------------------------

    @property
    def genes(self) -> int:
        return len(self.options)

    @property
    def resolution_gene(self) -> int:
        return self.genes - 1

    def allowed(self) -> np.ndarray:
        """[genes, most options] bool: which option indices each gene may take."""
        out = np.zeros((self.genes, max(map(len, self.options))), bool)
        for j, o in enumerate(self.options):
            out[j, : len(o)] = True
        return out

    def shared(self) -> np.ndarray:
        """[genes] bool: genes every step's row must agree on (the resolution)."""
        out = np.zeros(self.genes, bool)
        out[self.resolution_gene] = True
        return out

    def temporal_codes(self, row: np.ndarray) -> np.ndarray:
        """The TEMPORAL_OPS index per slot of a row (its first S genes, mapped through the options)."""
        s = len(self.slots)
        return np.array([TEMPORAL_OPS.index(self.options[j][row[j]]) for j in range(s)], np.int8)

    # -- rows <-> choices -----------------------------------------------------------------------------

    def subnet(self, row: np.ndarray) -> SubNet:
        key = np.asarray(row[len(self.slots):-1], np.int8).tobytes()
        if key not in self._subnets:
            s, levels = len(self.slots), len(self.unet.block_channels)
            values = [self.options[j][row[j]] for j in range(s, self.genes - 2)]
            per = [tuple(values[i * levels:(i + 1) * levels]) for i in range(len(SUBNET_FIELDS))]
            self._subnets[key] = SubNet(*per, bool(self.options[-2][row[-2]]))
        return self._subnets[key]

    def resolution(self, row: np.ndarray) -> tuple[int, int]:
        return self.options[-1][row[-1]]

    def decode(self, row: np.ndarray) -> tuple[TemporalPlan, SubNet, tuple[int, int]]:
        """(plan over the sub-network's slots, sub-network, (height, width) in pixels)."""
        subnet = self.subnet(row)
        kept = {s.id for s in unet_slots(subnet_config(self.unet, subnet))}
        codes = self.temporal_codes(row)
        plan = TemporalPlan.from_codes([s for s in self.slots if s in kept],
                                       [int(c) for s, c in zip(self.slots, codes) if s in kept])
        return plan, subnet, self.resolution(row)

    def encode(self, plan, subnet: SubNet, resolution: tuple[int, int]) -> np.ndarray:
        """A row for these choices (ConfigError when one is outside the space)."""
        resolved = TemporalPlan.resolve(plan, self.unet) if not isinstance(plan, TemporalPlan) else plan
        values = [resolved.get(s, "none") for s in self.slots]
        values += [v for name in SUBNET_FIELDS for v in getattr(subnet, name)] + [subnet.mid_block, tuple(resolution)]
        row = np.empty(self.genes, np.int8)
        for j, (v, options) in enumerate(zip(values, self.options)):
            if v not in options:
                raise ConfigError(f"{self.names[j]} = {v!r} is outside the search space (allowed: {list(options)})")
            row[j] = options.index(v)
        return row

    def default_row(self) -> np.ndarray:
        """The full model with its own plan at the first resolution."""
        return self.encode(self.unet.temporal_plan, SubNet.full(self.unet), self.resolutions[0])

