"""Elastic UNet (SNED/DDSM): sub-networks of a VideoUNet over inner width and depth, and their exact extraction.

A `SubNet` picks, per resolution level (the middle block goes with the last level):

- **width**, a fraction from WIDTHS of the level's *inner* sizes: the ResBlocks' conv1 output (= conv2
  input, time projection, second GroupNorm), the feed-forward hidden size and the attention heads. The
  first channels / hidden units / heads are kept. Outer channels (block_channels: what skips, resamplers,
  temporal layers and the norms between blocks see) never shrink, so every skip stays valid. A width is
  allowed at a level when it keeps a whole number of GroupNorm groups (the inner GroupNorm keeps its group
  size, channels / norm_groups) and of feed-forward units. Heads are never split: a level keeps the first
  ceil(width x heads) of them (a 2-head level at 0.75 keeps both, a 3-head level at 0.5 keeps two), so
  the attention narrows in whole heads while the ResBlocks and feed-forward narrow by the width itself.
- **up blocks**, how many of the up stage's layers_per_block + 1 ResBlocks (+ transformers) run, the first
  ones; a dropped block's skip goes unused. The first block stays: it is the one that changes the width
  from the level below. Down stages always run every block: a down block feeds both the next block and a
  skip that a kept up block joins (the up stage's first block joins the down stage's last), so no exact
  choice drops one.
- **transformer depth**, the first 1..transformer depth blocks of each spatial transformer (they are
  residual: a dropped block is the identity); levels without transformers keep the config's value.
- **mid block**, whether the middle block runs (it maps the deepest channels to themselves; BK-SDM drops it).

With these rules a sub-network is exactly the full network with the dropped inner channels and heads
zeroed and the dropped blocks replaced by the identity (tests/test_elastic.py checks it), and `extract`
turns it into an ordinary, smaller VideoUNet (config: UNetConfig's *_inner_channels, transformer_depths,
up_blocks, mid_block) whose every tensor is a leading slice of the full one's. Slots of dropped blocks lose
their temporal layers; kept slots keep their ids.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from mobile_sdk.config import UNetConfig, from_dict
from mobile_sdk.errors import ConfigError
from mobile_sdk.models import VideoUNet
from mobile_sdk.plan import unet_slots

WIDTHS = (1.0, 0.75, 0.5)
PER_LEVEL = ("widths", "up_blocks", "transformer_depths")


def _has_transformers(cfg: UNetConfig, level: int) -> bool:
    return cfg.attention_stages[level] or (cfg.mid_block and level == len(cfg.block_channels) - 1)


def _keeps_whole(count: int, width: float) -> bool:
    return (count * width).is_integer() and count * width >= 1


def kept_heads(cfg: UNetConfig, level: int, width: float) -> int:
    """Heads a width keeps at `level`: the first ceil(width x heads), so that no head is split."""
    return math.ceil(width * (cfg.attention_inner(level) // cfg.stage_head_dim(level)) - 1e-9)


def allowed_widths(cfg: UNetConfig, level: int) -> tuple[float, ...]:
    """The WIDTHS that keep whole GroupNorm groups (and, with spatial transformers, whole feed-forward
    units) at `level`; heads are rounded up (`kept_heads`)."""
    groups = cfg.res_inner(level) // (cfg.block_channels[level] // cfg.norm_groups)
    return tuple(w for w in WIDTHS if _keeps_whole(groups, w) and (
        not _has_transformers(cfg, level) or _keeps_whole(cfg.ff_inner(level), w)))


@dataclass(frozen=True)
class SubNet:
    """One sub-network choice; every tuple has one entry per resolution level (see the module docstring)."""

    widths: tuple[float, ...]
    up_blocks: tuple[int, ...]
    transformer_depths: tuple[int, ...]
    mid_block: bool

    @classmethod
    def full(cls, cfg: UNetConfig) -> "SubNet":
        levels = range(len(cfg.block_channels))
        return cls(tuple(1.0 for _ in levels), tuple(cfg.up_block_count(l) for l in levels),
                   tuple(cfg.stage_transformer_depth(l) for l in levels), cfg.mid_block)

    @classmethod
    def smallest(cls, cfg: UNetConfig) -> "SubNet":
        space = choices(cfg)
        return cls(*(tuple(min(options) for options in space[name]) for name in PER_LEVEL), False)

    @classmethod
    def sample(cls, cfg: UNetConfig, rng: random.Random) -> "SubNet":
        """Uniform over each choice independently."""
        space = choices(cfg)
        return cls(*(tuple(rng.choice(options) for options in space[name]) for name in PER_LEVEL),
                   rng.choice(space["mid_block"]))

    def validate(self, cfg: UNetConfig, where: str = "subnet") -> None:
        """ConfigError naming the field, the level and the allowed values unless this fits `cfg`."""
        space = choices(cfg)
        for name in PER_LEVEL:
            values = getattr(self, name)
            if len(values) != len(space[name]):
                raise ConfigError(f"{where}: {name} has {len(values)} entries; the UNet has {len(space[name])} "
                                  f"resolution levels")
            for level, (value, options) in enumerate(zip(values, space[name])):
                wrong_type = isinstance(value, bool) or not isinstance(value, (int, float) if name == "widths" else int)
                if wrong_type or value not in options:
                    raise ConfigError(f"{where}: {name}[{level}] = {value!r} is not allowed; choose from "
                                      f"{list(options)}{_why(cfg, name, level)}")
        if self.mid_block not in space["mid_block"]:
            raise ConfigError(f"{where}: mid_block = {self.mid_block!r}, but the UNet has no middle block")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "subnet") -> "SubNet":
        """From JSON data (unknown or missing keys and wrong types are errors naming them)."""
        return from_dict(cls, data, where)


def choices(cfg: UNetConfig) -> dict[str, list[tuple]]:
    """Allowed values of each SubNet field: one tuple per level for the per-level fields."""
    levels = range(len(cfg.block_channels))
    return {
        "widths": [allowed_widths(cfg, l) for l in levels],
        "up_blocks": [tuple(range(1, cfg.up_block_count(l) + 1)) for l in levels],
        "transformer_depths": [tuple(range(1, cfg.stage_transformer_depth(l) + 1)) if _has_transformers(cfg, l)
                               else (cfg.stage_transformer_depth(l),) for l in levels],
        "mid_block": [False, True] if cfg.mid_block else [False],
    }


def all_subnets(cfg: UNetConfig) -> Iterator[SubNet]:
    """Every allowed choice (the product of `choices`)."""
    space = choices(cfg)
    for widths, ups, depths, mid in itertools.product(
            itertools.product(*space["widths"]), itertools.product(*space["up_blocks"]),
            itertools.product(*space["transformer_depths"]), space["mid_block"]):
        yield SubNet(widths, ups, depths, mid)


def _why(cfg: UNetConfig, name: str, level: int) -> str:
    if name == "widths":
        ff = cfg.ff_inner(level) if _has_transformers(cfg, level) else None
        return (f" (of {WIDTHS}: those keeping whole GroupNorm groups of {cfg.block_channels[level] // cfg.norm_groups}"
                f" channels" + (f" and whole units of the {ff}-unit feed-forward" if ff else "") + ")")
    if name == "up_blocks":
        return " (the first block of an up stage always runs)"
    if not _has_transformers(cfg, level):
        return " (this level has no spatial transformers)"
    return ""


def subnet_config(cfg: UNetConfig, subnet: SubNet) -> UNetConfig:
    """The ordinary config of the extracted sub-network; sizes the sub-network keeps stay as in `cfg`."""
    subnet.validate(cfg)
    levels = range(len(cfg.block_channels))

    def per_level(field: str, values: list[int], current) -> tuple[int, ...]:
        return getattr(cfg, field) if values == [current(l) for l in levels] else tuple(values)

    def scaled(field: str, current, transformers_only: bool = False) -> tuple[int, ...]:
        return per_level(field, [int(current(l) * w) if _has_transformers(cfg, l) or not transformers_only
                                 else current(l) for l, w in zip(levels, subnet.widths)], current)

    sub = dataclasses.replace(
        cfg,
        res_inner_channels=scaled("res_inner_channels", cfg.res_inner),
        ff_inner_channels=scaled("ff_inner_channels", cfg.ff_inner, transformers_only=True),
        attention_inner_channels=per_level("attention_inner_channels", [
            kept_heads(cfg, l, w) * cfg.stage_head_dim(l) if _has_transformers(cfg, l) else cfg.attention_inner(l)
            for l, w in zip(levels, subnet.widths)], cfg.attention_inner),
        transformer_depths=per_level("transformer_depths", list(subnet.transformer_depths), cfg.stage_transformer_depth),
        up_blocks=per_level("up_blocks", list(subnet.up_blocks), cfg.up_block_count),
        mid_block=subnet.mid_block,
        temporal_plan={},
    )
    kept = {s.id for s in unet_slots(sub)}
    sub = dataclasses.replace(sub, temporal_plan={s: op for s, op in cfg.temporal_plan.items() if s in kept})
    sub.validate("sub-network")
    return sub


def subnet_of(cfg: UNetConfig, sub: UNetConfig, where: str = "UNet") -> SubNet:
    """The inverse of `subnet_config`: the SubNet of `cfg` whose config is `sub` (temporal plans aside)."""
    def unplanned(c: UNetConfig) -> UNetConfig:
        return dataclasses.replace(c, temporal_plan={})

    levels = range(len(cfg.block_channels))
    widths = [next((w for w in WIDTHS if int(cfg.res_inner(l) * w) == sub.res_inner(l)), None) for l in levels]
    if len(sub.block_channels) == len(cfg.block_channels) and None not in widths:
        subnet = SubNet(tuple(widths), tuple(sub.up_block_count(l) for l in levels),
                        tuple(sub.stage_transformer_depth(l) for l in levels), sub.mid_block)
        try:
            if unplanned(subnet_config(cfg, subnet)) == unplanned(sub):
                return subnet
        except ConfigError:
            pass
    raise ConfigError(f"{where}: its config is no sub-network (width, depth) of the model's UNet")


def _sliced(full: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Each target tensor as the leading slice of the full tensor of the same name (views, so gradients flow)."""
    out = {}
    for name, shape in shapes.items():
        source = full.get(name)
        if source is None or source.dim() != len(shape) or any(s > f for s, f in zip(shape, source.shape)):
            raise ValueError(f"sub-network tensor {name} {tuple(shape)} is no slice of the full model's "
                             f"{None if source is None else tuple(source.shape)}")
        out[name] = source[tuple(slice(0, s) for s in shape)]
    return out


def _check_plain(unet: nn.Module) -> None:
    if type(unet) is not VideoUNet:
        raise TypeError(f"elastic sub-networks come from a plain VideoUNet, got {type(unet).__name__} "
                        f"(extract the temporal supernet's plan first)")


def _plain_view(unet: nn.Module) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """(config, tensors under VideoUNet names) of a plain VideoUNet, or of a model that runs as one through
    its `plain_view()` (the temporal supernet: its active plan), without copying a tensor."""
    if type(unet) is not VideoUNet and hasattr(unet, "plain_view"):
        return unet.plain_view()
    _check_plain(unet)
    return unet.config, {**dict(unet.named_parameters()), **dict(unet.named_buffers())}


def extract(unet: VideoUNet, subnet: SubNet) -> VideoUNet:
    """An ordinary, smaller VideoUNet whose weights are copies of slices of `unet`'s."""
    _check_plain(unet)
    sub = VideoUNet(subnet_config(unet.config, subnet))
    own = sub.state_dict()
    with torch.no_grad():
        sub.load_state_dict(_sliced(unet.state_dict(), {k: v.shape for k, v in own.items()}), strict=True)
    return sub.eval()


@functools.lru_cache(maxsize=64)
def _skeleton(config_json: str) -> VideoUNet:
    """A weightless (meta) sub-network, to call with the full model's sliced tensors."""
    cfg = from_dict(UNetConfig, json.loads(config_json), "sub-network config")
    with torch.device("meta"):
        return VideoUNet(cfg)


def elastic_forward(unet: nn.Module, subnet: SubNet, sample: torch.Tensor, timestep: torch.Tensor,
                    encoder_hidden_states: torch.Tensor) -> torch.Tensor:
    """The supernet's shared-weight evaluation: `unet` (a VideoUNet, or a SupernetUNet with its plan set) run
    as the sub-network, slicing its weights at run time (views: gradients reach the full model's weights; the
    compute is the sub-network's)."""
    config, full = _plain_view(unet)
    skeleton = _skeleton(json.dumps(dataclasses.asdict(subnet_config(config, subnet)), sort_keys=True))
    shapes = {name: t.shape for name, t in itertools.chain(skeleton.named_parameters(), skeleton.named_buffers())}
    return torch.func.functional_call(skeleton, _sliced(full, shapes), (sample, timestep, encoder_hidden_states))
