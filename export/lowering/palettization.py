"""Weight palettization done in PyTorch: a k-means look-up table per weight, at one bit width for all
weights or at mixed widths chosen per weight for an average (a size budget); Core ML then stores the
tables as they are (`coreml.compress`).

Why in PyTorch: the palettized model is an ordinary module, so the weights Core ML will hold can be run
and compared with fp32 here, where Core ML cannot run; and a 1-D k-means over a histogram takes
seconds where coremltools' k-means takes minutes at 0.6B.

Mixed bits follow the rate-distortion habit of apple/ml-stable-diffusion's mixed-bit recipes: each
weight's error at each width is measured, then the weights whose next-narrower width costs the least
error per byte saved narrow first until the average is reached. The error of a weight is its layer's
output error relative to its output, estimated from the second moment of each input channel over the
component's calls in the export's test vectors (so a channel that carries large activations counts more).
"""
from __future__ import annotations

import contextlib
import heapq
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

BIT_CHOICES = (2, 3, 4, 6, 8)  # widths Core ML's tables take from iOS 18 (1 bit is too coarse to choose)
BIT_CHOICES_IOS17 = (2, 4, 6, 8)  # iOS 17's constexpr_lut_to_dense has no 3-bit tables
WEIGHT_THRESHOLD = 2048  # coremltools' default: weights of more elements are compressed, the rest stay fp16
_KMEANS_ITERATIONS = 40
_BINS = 1 << 18
_MIXED = re.compile(r"^palettize-mixed(\d+(?:\.\d+)?)$")


def average_bits_of(mode: str) -> float | None:
    """The average of a mixed mode ('palettize-mixed3.6' -> 3.6), None for any other mode."""
    m = _MIXED.match(mode)
    return float(m.group(1)) if m else None


def is_mixed_mode(mode: str) -> bool:
    return _MIXED.match(mode) is not None


def check_average(mode: str) -> None:
    bits = average_bits_of(mode)
    if bits is not None and not BIT_CHOICES[0] <= bits <= BIT_CHOICES[-1]:
        raise ValueError(f"{mode}: the average must lie between {BIT_CHOICES[0]} and {BIT_CHOICES[-1]} bits per weight")


def bit_choices(deployment_target: str) -> tuple[int, ...]:
    return BIT_CHOICES_IOS17 if deployment_target < "iOS18" else BIT_CHOICES


@dataclass
class _Histogram:
    """A weight in 2**18 value bins: per bin its values' mean and count (what k-means needs), and the
    importance-weighted sums of 1, w and w**2 (what the error of any table needs)."""
    means: torch.Tensor
    prefix_n: torch.Tensor
    prefix_s: torch.Tensor
    m0: torch.Tensor
    m1: torch.Tensor
    m2: torch.Tensor


def _histogram(values: torch.Tensor, importance: torch.Tensor | None = None) -> _Histogram | None:
    """None for a constant weight."""
    x = values.detach().flatten().float()
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return None
    index = ((x - lo) * ((_BINS - 1) / (hi - lo))).long().clamp_(0, _BINS - 1)
    xd = x.double()
    counts = torch.bincount(index, minlength=_BINS).double()
    sums = torch.bincount(index, weights=xd, minlength=_BINS)
    if importance is None:
        m0, m1, m2 = counts, sums, torch.bincount(index, weights=xd * xd, minlength=_BINS)
    else:
        imp = importance.double().flatten()
        m0, m1 = torch.bincount(index, weights=imp, minlength=_BINS), torch.bincount(index, weights=imp * xd, minlength=_BINS)
        m2 = torch.bincount(index, weights=imp * xd * xd, minlength=_BINS)
    kept = counts > 0
    counts, sums = counts[kept], sums[kept]
    return _Histogram(sums / counts,  # ascending: bins are ordered and each mean lies in its bin
                      torch.cat([counts.new_zeros(1), counts.cumsum(0)]), torch.cat([sums.new_zeros(1), sums.cumsum(0)]),
                      m0[kept], m1[kept], m2[kept])


def _kmeans(h: _Histogram, entries: int) -> torch.Tensor:
    """Lloyd's k-means over the bins with prefix sums, O(k log bins) per iteration; quantile start."""
    quantiles = (torch.arange(entries, dtype=torch.float64) + 0.5) / entries * h.prefix_n[-1]
    centres = torch.unique(h.means[torch.searchsorted(h.prefix_n[1:], quantiles).clamp(max=h.means.numel() - 1)])
    last = torch.tensor([h.means.numel()])
    for _ in range(_KMEANS_ITERATIONS):
        edges = torch.cat([torch.zeros(1, dtype=torch.long), torch.searchsorted(h.means, (centres[1:] + centres[:-1]) / 2), last])
        n = h.prefix_n[edges[1:]] - h.prefix_n[edges[:-1]]
        moved = ((h.prefix_s[edges[1:]] - h.prefix_s[edges[:-1]]) / n)[n > 0]
        if moved.numel() == centres.numel() and torch.equal(moved, centres):
            break
        centres = moved
    return torch.unique(centres.to(torch.float16)).to(torch.float32)


def _table_error(h: _Histogram, table: torch.Tensor) -> float:
    """sum of importance * (entry - w)**2 with each bin on its nearest entry (exact up to the bin that
    straddles a boundary), relative to sum of importance * w**2."""
    t = table.double()
    c = t[torch.searchsorted((t[1:] + t[:-1]) / 2, h.means)] if t.numel() > 1 else t.expand_as(h.means)
    power = float(h.m2.sum()) or 1.0
    return max(0.0, float((c * c * h.m0 - 2 * c * h.m1 + h.m2).sum())) / power


def lookup_tables(values: torch.Tensor, bits: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """{b: at most 2**b fp16-representable values minimising the squared error of `values`}: 1-D k-means
    over a histogram of 2**18 bins (distinct values further apart than a bin stay exact): O(n) once, where
    sorting 600M weights took minutes."""
    h = _histogram(values)
    if h is None:
        value = values.detach().flatten()[0].float().reshape(1)
        return {b: value.half().float() for b in bits}
    return {b: _kmeans(h, 1 << b) for b in bits}


def apply_table(weight: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """`weight` with every element replaced by its nearest entry of `table` (sorted)."""
    if table.numel() == 1:
        return torch.full_like(weight, float(table[0]))
    index = torch.searchsorted((table[1:] + table[:-1]) / 2, weight.detach().contiguous().float())
    return table[index].to(weight.dtype)


def compressible_weights(modules: list[nn.Module], used: set[int] | None = None) -> dict[str, nn.Parameter]:
    """{name: parameter} of the floating-point parameters Core ML palettizes (> WEIGHT_THRESHOLD elements),
    each once however many entries share it; with `used`, only those of modules whose ids it holds."""
    found, seen = {}, set()
    for i, module in enumerate(modules):
        for owner_name, owner in module.named_modules():
            if used is not None and id(owner) not in used:
                continue
            for name, p in owner.named_parameters(prefix=owner_name, recurse=False):
                if id(p) not in seen and p.is_floating_point() and p.numel() > WEIGHT_THRESHOLD:
                    seen.add(id(p))
                    found[name if i == 0 else f"{i}.{name}"] = p
    return found


@dataclass
class Observation:
    """What calls made while `observing` was open: the ids of the modules they used (a wrapper may hold
    weights its call never touches, e.g. the VAE's encoder beside the decoder), and per weight of every
    Linear and ungrouped Conv the summed mean square of each input channel over its calls."""
    used: set[int] = field(default_factory=set)
    sums: dict[int, list] = field(default_factory=dict)

    def moments(self) -> dict[int, torch.Tensor]:
        """{id(weight): mean square of each input channel}."""
        return {key: total / count for key, (total, count) in self.sums.items()}


@contextlib.contextmanager
def observing(modules: list[nn.Module]):
    """An Observation of every call of `modules` in the block: the export's own eager calls (its test
    vectors) stand in for a calibration pass, so planning costs no extra call (one 0.6B UNet call is ~30 s)."""
    seen = Observation()

    def observe(layer, args):
        seen.used.add(id(layer))
        if not (isinstance(layer, nn.Linear) or (isinstance(layer, nn.modules.conv._ConvNd) and layer.groups == 1)):
            return
        x = args[0].detach().float()
        channel = x.dim() - 1 if isinstance(layer, nn.Linear) else 1
        dims = [d for d in range(x.dim()) if d != channel]
        # one fused reduction: x.square().mean() made a copy of every activation (10 % of a 0.6B UNet call)
        sq = torch.linalg.vector_norm(x, dim=dims).square() / (x.numel() // x.shape[channel]) if dims else x.square()
        entry = seen.sums.setdefault(id(layer.weight), [torch.zeros_like(sq), 0])
        if entry[0].shape == sq.shape:
            entry[0] += sq
            entry[1] += 1

    layers = {id(layer): layer for module in modules for layer in module.modules()}  # shared layers hooked once
    hooks = [layer.register_forward_pre_hook(observe) for layer in layers.values()]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def tables_and_errors(weight: torch.Tensor, moments: torch.Tensor | None,
                      choices: tuple[int, ...]) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    """{bits: table}, and {bits: output error of the weight on that table relative to the output's
    power}, with inputs of the given per-channel mean squares (None: all alike, i.e. the weight's own
    relative error). One pass over the weight, whatever the number of choices."""
    w = weight.detach().float()
    importance = None
    if w.dim() >= 2 and moments is not None and moments.numel() == w.shape[1]:
        importance = moments.reshape(1, -1, *([1] * (w.dim() - 2))).expand_as(w)
    h = _histogram(w, importance)
    if h is None:
        tables = lookup_tables(w, choices)
        return tables, {b: 0.0 for b in choices}
    tables = {b: _kmeans(h, 1 << b) for b in choices}
    return tables, {b: _table_error(h, t) for b, t in tables.items()}


def allocate_bits(errors: dict[str, dict[int, float]], sizes: dict[str, int], average: float) -> dict[str, int]:
    """{weight: bits} with sum(size * bits) <= average * sum(size): from the widest choice, the weight
    whose next-narrower width adds the least error per bit saved narrows first (`errors` holds each
    weight's error at every choice)."""
    choices = sorted(next(iter(errors.values()))) if errors else []
    bits = {name: choices[-1] for name in errors}
    budget = average * sum(sizes.values())
    used = sum(sizes[name] * b for name, b in bits.items())

    def move(name):
        i = choices.index(bits[name])
        if i == 0:
            return None
        narrower = choices[i - 1]
        saved = sizes[name] * (bits[name] - narrower)
        return ((errors[name][narrower] - errors[name][bits[name]]) / saved, name, narrower)

    heap = [m for m in map(move, sorted(errors)) if m]
    heapq.heapify(heap)
    while used > budget + 1e-9 and heap:
        _, name, narrower = heapq.heappop(heap)
        used -= sizes[name] * (bits[name] - narrower)
        bits[name] = narrower
        if (m := move(name)) is not None:
            heapq.heappush(heap, m)
    return bits


@dataclass
class PalettizationPlan:
    """The bit width of each compressible weight of one component, and what it was chosen for."""
    bits: dict[str, int]
    sizes: dict[str, int]
    mode: str
    weights: dict[str, nn.Parameter] = field(default_factory=dict, repr=False)  # what `palettized` replaces
    tables: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # each weight's, at its bits

    @property
    def average_bits(self) -> float:
        total = sum(self.sizes.values())
        return sum(self.sizes[n] * b for n, b in self.bits.items()) / total if total else 0.0

    def summary(self) -> dict:
        by_bits: dict[str, int] = {}
        for name, b in self.bits.items():
            by_bits[str(b)] = by_bits.get(str(b), 0) + self.sizes[name]
        return {"mode": self.mode, "average_bits": round(self.average_bits, 3), "weight_threshold": WEIGHT_THRESHOLD,
                "weights": len(self.bits), "elements_by_bits": dict(sorted(by_bits.items(), key=lambda kv: int(kv[0])))}


def plan_palettization(modules: list[nn.Module], observation: Observation, mode: str,
                       choices: tuple[int, ...] = BIT_CHOICES) -> PalettizationPlan:
    """Bits per weight of `modules` (the weights their observed calls used): `palettizeN` gives every weight
    N bits; `palettize-mixedB` allocates among `choices` by measured error for an average of B bits."""
    weights = compressible_weights(modules, observation.used)
    sizes = {name: p.numel() for name, p in weights.items()}
    average = average_bits_of(mode)
    if average is None:
        bits = int(mode[len("palettize"):])
        tables = {name: lookup_tables(p, (bits,))[bits] for name, p in weights.items()}
        return PalettizationPlan({name: bits for name in weights}, sizes, mode, weights, tables)
    moments = observation.moments()
    tables, errors = {}, {}
    for name, p in weights.items():
        tables[name], errors[name] = tables_and_errors(p, moments.get(id(p)), choices)
    bits = allocate_bits(errors, sizes, average)
    return PalettizationPlan(bits, sizes, mode, weights, {name: tables[name][b] for name, b in bits.items()})


@contextlib.contextmanager
def palettized(plan: PalettizationPlan):
    """The plan's weights palettized in place during the block, restored after it. The originals wait in
    a scratch file, read back one weight at a time: holding them beside the palettized copies cost 2 GB
    more peak memory for the 0.6B UNet."""
    with tempfile.TemporaryFile(prefix="palettize-") as spill:
        written = []
        try:
            for name in plan.bits:
                data = plan.weights[name].data
                spill.write(memoryview(data.contiguous().numpy()).cast("B"))
                written.append(name)
                data.copy_(apply_table(data, plan.tables[name]))
            yield plan
        finally:
            spill.seek(0)
            for name in written:
                data = plan.weights[name].data
                original = np.fromfile(spill, dtype=data.numpy().dtype, count=data.numel())
                data.copy_(torch.from_numpy(original).reshape(data.shape))


def exact_table(values: np.ndarray, choices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(lookup table padded to 2**bits entries, uint8 indices) holding `values` exactly, at the fewest of
    `choices` bits (or 1 bit for two values or fewer); None past 256 distinct values. fp16 values are told
    apart by their bit patterns, in O(n) (and not by coremltools' "unique" mode: numpy 2.3's np.unique
    miscounts float16 arrays on this machine)."""
    v = np.asarray(values)
    if v.dtype == np.float16:
        patterns = v.ravel().view(np.uint16)
        present = np.flatnonzero(np.bincount(patterns, minlength=1 << 16))
        if present.size > 256:
            return None
        table = present.astype(np.uint16).view(np.float16)
        position = np.zeros(1 << 16, dtype=np.uint8)
        position[present] = np.arange(present.size)
        index = position[patterns]
    else:
        table, index = np.unique(v.astype(np.float32).ravel(), return_inverse=True)
        index = index.astype(np.uint8) if table.size <= 256 else None
    fitting = [b for b in (1, *choices) if table.size <= 1 << b]
    if index is None or not fitting:
        return None
    padded = np.zeros(1 << fitting[0], dtype=v.dtype)
    padded[:table.size] = table
    return padded, index
