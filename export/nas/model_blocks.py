"""The blocks a model's latency is made of, each keyed by an op-signature string.

A signature encodes the block and every shape that changes its cost, e.g.
`temporal.attn3d:x=8x64x8x8,frames=8,heads=2` or `backbone.resblock:x=8x96x8x8,temb=1x128,out=64,groups=8`.
The backbone blocks are found by running the real `VideoUNet` once with hooks (on the meta device, so
even the 0.6B preset costs nothing), so the decomposition can never drift from the model. One UNet call
is the backbone blocks (with multiplicity) plus one temporal entry per slot whose op is not "none".
The text encoder and the VAE decoder are single entries; `runtime.call` is an empty program, the fixed
cost of one program invocation (see export.nas.efficiency_predictor).
"""
from __future__ import annotations

import copy
import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from mobile_sdk.config import ModelConfig
from mobile_sdk.errors import ConfigError
from mobile_sdk.models import AutoencoderKL, TextEncoder, VAEDecoder, VideoUNet
from mobile_sdk.models.layers import silu
from mobile_sdk.models.temporal import make_temporal_layer
from mobile_sdk.plan import TEMPORAL_OPS, TemporalPlan, unet_slots

CALL_SIGNATURE = "runtime.call"


@dataclass
class Block:
    """One table entry: how to build its module and example inputs (for micro-benchmarks)."""

    signature: str
    group: str  # "backbone", "temporal", "text_encoder", "vae_decoder", "runtime"
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]
    inputs_meta: tuple[torch.Tensor, ...]  # meta tensors with the input shapes
    make_meta_module: Callable[[], nn.Module]


@dataclass
class ModelBlocks:
    """The block decomposition of one model config at its resolution and frame count."""

    config: ModelConfig
    slots: list[str]
    backbone: Counter  # signature -> uses per UNet call
    temporal: dict[str, dict[str, str]]  # slot -> op -> signature ("none" maps to no entry)
    text_encoder: str
    vae_decoder: str
    unet_calls_per_step: int  # 2 with classifier-free guidance (batch-1 programs), else 1
    decoder_calls: int  # the decoder program runs once per frame
    blocks: dict[str, Block] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (module path, signature) of each backbone call

    @property
    def steps(self) -> int:
        return self.config.scheduler.num_inference_steps

    def signatures(self) -> list[str]:
        return list(self.blocks)

    def uses(self, plan_spec) -> dict[str, int]:
        """signature -> occurrences in one UNet call with this plan (backbone and temporal entries)."""
        plan = TemporalPlan.resolve(plan_spec, self.config.unet)
        uses = dict(self.backbone)
        for slot in self.slots:
            if plan[slot] != "none":
                sig = self.temporal[slot][plan[slot]]
                uses[sig] = uses.get(sig, 0) + 1
        return uses


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape)


def _signature(kind: str, **fields) -> str:
    return kind + ":" + ",".join(f"{k}={v}" for k, v in fields.items())


class _Call(nn.Module):
    """Wraps a block so that its tensor inputs are the only forward arguments (for torch.export)."""

    def __init__(self, module: nn.Module, extra: tuple = ()):
        super().__init__()
        self.module, self.extra = module, extra

    def forward(self, *tensors):
        return self.module(*tensors, *self.extra)


class _Head(nn.Module):
    """The UNet's output head (norm, SiLU, conv); run as one block."""

    def __init__(self, norm: nn.Module, conv: nn.Module):
        super().__init__()
        self.norm, self.conv = norm, conv

    def forward(self, x):
        return self.conv(silu(self.norm(x)))


class _CallOverhead(nn.Module):
    def forward(self, x):
        return x + 1.0


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights: zero-initialised outputs (temporal layers) would make int8 calibration degenerate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def _inputs(meta: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for m in meta:
        if m.dtype == torch.long:
            out.append(torch.randint(3, 200, m.shape, generator=g))
        else:
            out.append(torch.rand(m.shape, generator=g))
    return tuple(out)


def _block(signature, group, meta_inputs, factory, seed) -> Block:
    def build():
        return _randomize(factory(), seed), _inputs(meta_inputs, seed)

    def make_meta():
        with torch.device("meta"):
            return factory()

    return Block(signature, group, build, meta_inputs, make_meta)


def _capture_backbone(cfg: ModelConfig) -> list[tuple[str, str, nn.Module, tuple, tuple]]:
    """(block kind, module name, module, tensor inputs, extra args) of every backbone block call, in order."""
    with torch.device("meta"):
        unet = VideoUNet(cfg.unet, plan={})
    kinds = {"time_embedding": "time_embedding", "conv_in": "conv_in", "norm_out": "head"}
    for name, module in unet.named_modules():
        parts = name.split(".")
        if len(parts) >= 3 and parts[-2] in ("res", "attn"):
            kinds[name] = "resblock" if parts[-2] == "res" else "transformer"
        elif parts[-1] == "resample":
            kinds[name] = type(module).__name__.lower()
    modules = dict(unet.named_modules())
    calls: list[tuple[str, str, nn.Module, tuple, tuple]] = []

    def hook_for(name):
        def hook(module, args):
            tensors = tuple(a for a in args if isinstance(a, torch.Tensor))
            extra = tuple(a for a in args if not isinstance(a, torch.Tensor))
            calls.append((kinds[name], name, module, tensors, extra))
        return hook

    handles = [modules[name].register_forward_pre_hook(hook_for(name)) for name in kinds]
    f = cfg.vae.downsample_factor
    with torch.device("meta"):
        unet(torch.empty(1, cfg.unet.in_channels, cfg.num_frames, cfg.height // f, cfg.width // f), torch.empty(1),
             torch.empty(1, cfg.text_encoder.max_length, cfg.unet.cross_attention_dim))
    for h in handles:
        h.remove()
    return calls


def _fields(kind: str, module: nn.Module, tensors: tuple, extra: tuple, u) -> dict:
    """What sets a backbone block's cost. Inner sizes that sub-networks shrink (export.nas.elastic) appear
    only where they differ from the outer size's default, so full-model signatures (and tables) stay as
    they were and a signature still names one block: `inner=` (ResBlock conv1 channels, default `out`),
    `ff_hidden=` (feed-forward hidden size, default channels x `ff`); heads and depth are the block's own."""
    fields = {"x": _shape(tensors[0])}
    if kind == "resblock":
        out, inner = module.conv2.out_channels, module.conv1.out_channels
        fields.update(temb=_shape(tensors[1]), out=out, groups=u.norm_groups)
        if inner != out:
            fields["inner"] = inner
    elif kind == "transformer":
        channels, first = tensors[0].shape[1], module.blocks[0]
        fields.update(context=_shape(tensors[1]), frames=extra[0], heads=first.attn1.heads, depth=len(module.blocks),
                      ff=u.ff_mult)
        if first.ff.fc1.out_features != channels * u.ff_mult:
            fields["ff_hidden"] = first.ff.fc1.out_features
    return fields


def model_blocks(cfg: ModelConfig) -> ModelBlocks:
    """Decompose `cfg` (at cfg.height x cfg.width, cfg.num_frames) into table entries."""
    u = cfg.unet
    blocks: dict[str, Block] = {}
    backbone: Counter = Counter()
    calls: list[tuple[str, str]] = []
    seed = 0
    unets: dict[str, VideoUNet] = {}  # one backbone per device: "meta" for estimates, "cpu" for programs

    def backbone_module(path: str) -> nn.Module:
        device = str(torch.get_default_device())
        if device not in unets:
            unets[device] = VideoUNet(u, plan={})
        unet = unets[device]
        if path == "norm_out":
            return _Head(copy.deepcopy(unet.norm_out), copy.deepcopy(unet.conv_out))
        return copy.deepcopy(unet.get_submodule(path))

    for kind, path, module, tensors, extra in _capture_backbone(cfg):
        sig = _signature(f"backbone.{kind}", **_fields(kind, module, tensors, extra, u))
        backbone[sig] += 1
        calls.append((path, sig))
        if sig not in blocks:
            seed += 1
            factory = (lambda p=path, e=extra: _Call(backbone_module(p), e))
            blocks[sig] = _block(sig, "backbone", tuple(torch.empty(t.shape, dtype=t.dtype, device="meta") for t in tensors),
                                 factory, seed)

    # Temporal slots run on the output of the block they follow: [B*T, C, h, w] at the slot's level.
    f = cfg.vae.downsample_factor
    temporal: dict[str, dict[str, str]] = {}
    for slot in unet_slots(u):
        h, w = cfg.height // f // 2 ** slot.level, cfg.width // f // 2 ** slot.level
        x = torch.empty(cfg.num_frames, slot.channels, h, w, device="meta")
        temporal[slot.id] = {}
        for op in TEMPORAL_OPS[1:]:
            fields = {"x": _shape(x), "frames": cfg.num_frames}
            fields.update({"k": u.temporal_kernel} if op.startswith("conv") else {"heads": slot.channels // u.head_dim})
            sig = _signature(f"temporal.{op}", **fields)
            temporal[slot.id][op] = sig
            if sig not in blocks:
                seed += 1
                factory = (lambda o=op, c=slot.channels: _Call(
                    make_temporal_layer(o, c, u.norm_groups, u.head_dim, u.temporal_kernel, u.max_frames), (cfg.num_frames,)))
                blocks[sig] = _block(sig, "temporal", (x,), factory, seed)

    te = cfg.text_encoder
    te_sig = _signature("text_encoder", ids=f"1x{te.max_length}", hidden=te.hidden_size, layers=te.num_layers,
                        heads=te.num_heads, ffn=te.intermediate_size)
    blocks[te_sig] = _block(te_sig, "text_encoder", (torch.empty(1, te.max_length, dtype=torch.long, device="meta"),),
                            lambda: TextEncoder(te), seed + 1)
    latent = torch.empty(1, cfg.vae.latent_channels, cfg.height // f, cfg.width // f, device="meta")
    vae_sig = _signature("vae_decoder", z=_shape(latent), channels="-".join(map(str, cfg.vae.block_channels)),
                         layers=cfg.vae.layers_per_block)
    blocks[vae_sig] = _block(vae_sig, "vae_decoder", (latent,), lambda: VAEDecoder(AutoencoderKL(cfg.vae)), seed + 2)
    blocks[CALL_SIGNATURE] = _block(CALL_SIGNATURE, "runtime", (torch.empty(1, 8, device="meta"),), _CallOverhead, 0)

    return ModelBlocks(config=cfg, slots=[s.id for s in unet_slots(u)], backbone=backbone, temporal=temporal,
                       text_encoder=te_sig, vae_decoder=vae_sig, unet_calls_per_step=2 if cfg.guidance_scale > 1 else 1,
                       decoder_calls=cfg.num_frames, blocks=blocks, calls=calls)


# -- elastic sub-networks (export.nas.elastic) at several resolutions -----------------------------------------


def _level(path: str, levels: int) -> int | None:
    """The resolution level whose width/depth choice sets this backbone block (None: no choice does)."""
    parts = path.split(".")
    if parts[0] in ("down", "up"):
        return int(parts[1])
    return levels - 1 if parts[0] == "mid" else None


def _kept(path: str, subnet) -> bool:
    parts = path.split(".")
    if parts[0] == "mid":
        return subnet.mid_block
    if parts[0] == "up" and parts[2] in ("res", "attn"):
        return int(parts[3]) < subnet.up_blocks[int(parts[1])]
    return True


@dataclass
class ElasticBlocks:
    """Every block of every sub-network (export.nas.elastic.SubNet) at every resolution of a set: the
    entries an elastic latency table holds, and the decomposition of any one sub-network, composed
    without running the model again.

    A backbone block's signature depends only on its own level's (width, transformer depth) and the
    resolution (outer channels never shrink, see elastic.py), so a few models cover the space: the k-th
    runs level l at its (k mod n_l)-th choice. `of(subnet, resolution)` then picks, per module path, the
    signature for that level's choice; tests check it against decomposing the extracted model."""

    config: ModelConfig  # the full model (its resolution is the first of `resolutions`)
    resolutions: tuple[tuple[int, int], ...]  # (height, width) in pixels
    per_resolution: dict[tuple[int, int], tuple[ModelBlocks, dict]]  # full-model blocks, path -> choice -> sig
    blocks: dict[str, Block] = field(default_factory=dict)

    def signatures(self) -> list[str]:
        return list(self.blocks)

    def header(self) -> dict:
        """A table's `header.elastic`: which sub-networks and resolutions its entries cover."""
        from export.nas.elastic import WIDTHS

        return {"resolutions": [list(r) for r in self.resolutions], "widths": list(WIDTHS),
                "covers": "every block of every sub-network (export.nas.elastic: width, up blocks, transformer "
                          "depth, mid block) at each resolution"}

    def of(self, subnet, resolution: tuple[int, int]) -> ModelBlocks:
        """The ModelBlocks of `subnet` at `resolution` (as `model_blocks` of the extracted model gives)."""
        from export.nas.elastic import subnet_config

        if resolution not in self.per_resolution:
            raise ConfigError(f"resolution {resolution[0]}x{resolution[1]} is not among the elastic blocks' "
                             f"{', '.join(f'{h}x{w}' for h, w in self.resolutions)}")
        full, by_path = self.per_resolution[resolution]
        unet = subnet_config(self.config.unet, subnet)
        levels = len(unet.block_channels)
        backbone: Counter = Counter()
        calls = []
        for path, options in by_path.items():
            if _kept(path, subnet):
                level = _level(path, levels)
                sig = options[None if level is None else (subnet.widths[level], subnet.transformer_depths[level])]
                backbone[sig] += 1
                calls.append((path, sig))
        slots = [s.id for s in unet_slots(unet)]
        used = {*backbone, *(sig for s in slots for sig in full.temporal[s].values()), full.text_encoder,
                full.vae_decoder, CALL_SIGNATURE}
        return ModelBlocks(config=replace(full.config, unet=unet), slots=slots, backbone=backbone,
                           temporal={s: full.temporal[s] for s in slots}, text_encoder=full.text_encoder,
                           vae_decoder=full.vae_decoder, unet_calls_per_step=full.unet_calls_per_step,
                           decoder_calls=full.decoder_calls, blocks={s: self.blocks[s] for s in used}, calls=calls)


def elastic_blocks(cfg: ModelConfig, resolutions: list[tuple[int, int]] | None = None) -> ElasticBlocks:
    """The elastic decomposition of `cfg` at `resolutions` (default: the config's own)."""
    from export.nas.elastic import SubNet, choices, subnet_config

    resolutions = tuple(dict.fromkeys(resolutions or [(cfg.height, cfg.width)]))
    for h, w in resolutions:
        cfg.check_size(h, w, cfg.num_frames, f"elastic resolution {h}x{w}")
    space = choices(cfg.unet)
    per_level = [list(itertools.product(widths, depths))
                 for widths, depths in zip(space["widths"], space["transformer_depths"])]
    full = SubNet.full(cfg.unet)
    covering = [replace(full, widths=tuple(c[k % len(c)][0] for c in per_level),
                        transformer_depths=tuple(c[k % len(c)][1] for c in per_level))
                for k in range(max(map(len, per_level)))]
    blocks: dict[str, Block] = {}
    per_resolution = {}
    for h, w in resolutions:
        at = replace(cfg, height=h, width=w)
        by_path: dict[str, dict] = {}
        base = None
        for subnet in covering:
            mb = model_blocks(replace(at, unet=subnet_config(cfg.unet, subnet)))
            base = base or mb
            for sig, block in mb.blocks.items():
                blocks.setdefault(sig, block)
            levels = len(cfg.unet.block_channels)
            for path, sig in mb.calls:
                level = _level(path, levels)
                key = None if level is None else (subnet.widths[level], subnet.transformer_depths[level])
                by_path.setdefault(path, {})[key] = sig
        per_resolution[(h, w)] = (base, by_path)
    return ElasticBlocks(config=cfg, resolutions=resolutions, per_resolution=per_resolution, blocks=blocks)
