"""Typed model configs and the YAML presets they are loaded from (one source: mobile_sdk/presets/*.yaml)."""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .contract import names
from .errors import ConfigError


UPSAMPLE_MODES = ("bilinear", "nearest")
DOWNSAMPLE_PADDINGS = ("symmetric", "bottom_right")
TOKENIZERS = tuple(names()["tokenizers"]["types"])


def _check_choice(where: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {name} {value!r} is unknown; choose from {', '.join(choices)}")


@dataclass
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    block_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    # Which stages (by resolution level, 0 = full latent resolution) carry spatial transformer blocks.
    attention_stages: tuple[bool, ...] = (False, True)
    transformer_depth: int = 1
    head_dim: int = 32
    cross_attention_dim: int = 64
    norm_groups: int = 8
    ff_mult: int = 4
    temporal_kernel: int = 3
    max_frames: int = 64
    # Slot -> op; keys may be exact slot ids or globs ("down0.*"); unnamed slots are "none".
    temporal_plan: dict[str, str] = field(default_factory=dict)
    # The options below default to our own models; imported SD-1.5-family UNets set them (export/convert).
    # Heads of each stage's spatial transformers (the middle block takes the last); empty: channels // head_dim.
    # head_dim still sizes the temporal attention layers.
    attention_heads: tuple[int, ...] = ()
    ff_activation: str = "gelu"  # "gelu" or "geglu" (SD)
    upsample: str = "bilinear"  # or "nearest" (SD)
    transformer_norm_eps: float = 1e-5  # the GroupNorm before each spatial transformer (SD: 1e-6)
    mid_block: bool = True  # BK-SDM-small/tiny remove it (and its three slots)
    # Per resolution level (the middle block takes the last); empty: today's sizes. Sub-networks extracted
    # from a supernet (export/nas/elastic.py) shrink only these inner widths, never a block's in/out channels.
    res_inner_channels: tuple[int, ...] = ()  # ResBlock conv1 out = conv2 in; empty: the stage's channels
    ff_inner_channels: tuple[int, ...] = ()  # feed-forward hidden size; empty: channels * ff_mult
    attention_inner_channels: tuple[int, ...] = ()  # q/k/v width = heads x head size; empty: the stage's channels
    transformer_depths: tuple[int, ...] = ()  # blocks per spatial transformer; empty: transformer_depth
    # ResBlocks (+ transformers) of each up stage; empty: layers_per_block + 1, one per skip. Fewer leave
    # that stage's last skips unused.
    up_blocks: tuple[int, ...] = ()

    def validate(self, where: str) -> None:
        n = len(self.block_channels)
        if n < 1:
            raise ConfigError(f"{where}: unet.block_channels must not be empty")
        if len(self.attention_stages) != n:
            raise ConfigError(
                f"{where}: unet.attention_stages has {len(self.attention_stages)} entries, "
                f"block_channels has {n}; they must match"
            )
        if self.attention_heads and len(self.attention_heads) != n:
            raise ConfigError(f"{where}: unet.attention_heads has {len(self.attention_heads)} entries, "
                              f"block_channels has {n}; give one per stage or none")
        for level, c in enumerate(self.block_channels):
            if c % self.norm_groups:
                raise ConfigError(f"{where}: unet channel count {c} is not divisible by norm_groups {self.norm_groups}")
            if c % self.head_dim:
                raise ConfigError(f"{where}: unet channel count {c} is not divisible by head_dim {self.head_dim}")
            if self.attention_heads and (self.attention_heads[level] < 1 or c % self.attention_heads[level]):
                raise ConfigError(f"{where}: unet channel count {c} is not divisible by attention_heads[{level}] "
                                  f"= {self.attention_heads[level]}")
        if self.temporal_kernel % 2 != 1:
            raise ConfigError(f"{where}: unet.temporal_kernel must be odd, got {self.temporal_kernel}")
        _check_choice(where, "unet.ff_activation", self.ff_activation, ("gelu", "geglu"))
        _check_choice(where, "unet.upsample", self.upsample, UPSAMPLE_MODES)
        self._validate_inner_sizes(where)

    def _validate_inner_sizes(self, where: str) -> None:
        n = len(self.block_channels)
        for name in ("res_inner_channels", "ff_inner_channels", "attention_inner_channels", "transformer_depths",
                     "up_blocks"):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ConfigError(f"{where}: unet.{name} has {len(values)} entries, block_channels has {n}; "
                                  f"give one per stage or none")
            if any(v < 1 for v in values):
                raise ConfigError(f"{where}: unet.{name} must be positive, got {list(values)}")
        for level, c in enumerate(self.block_channels):
            group = c // self.norm_groups
            if self.res_inner(level) % group:
                raise ConfigError(f"{where}: unet.res_inner_channels[{level}] = {self.res_inner(level)} is not a "
                                  f"multiple of the group size {group} (channels {c} / norm_groups {self.norm_groups})")
            if self.attention_inner(level) % self.stage_head_dim(level):
                raise ConfigError(f"{where}: unet.attention_inner_channels[{level}] = {self.attention_inner(level)} "
                                  f"is not a whole number of heads of size {self.stage_head_dim(level)}")
            if self.up_block_count(level) > self.layers_per_block + 1:
                raise ConfigError(f"{where}: unet.up_blocks[{level}] = {self.up_block_count(level)}, but an up stage "
                                  f"has only {self.layers_per_block + 1} skips to join")

    def stage_head_dim(self, level: int) -> int:
        """Head size of the spatial transformers at a resolution level."""
        c = self.block_channels[level]
        return c // self.attention_heads[level] if self.attention_heads else self.head_dim

    def res_inner(self, level: int) -> int:
        return self.res_inner_channels[level] if self.res_inner_channels else self.block_channels[level]

    def ff_inner(self, level: int) -> int:
        return self.ff_inner_channels[level] if self.ff_inner_channels else self.block_channels[level] * self.ff_mult

    def attention_inner(self, level: int) -> int:
        return self.attention_inner_channels[level] if self.attention_inner_channels else self.block_channels[level]

    def stage_transformer_depth(self, level: int) -> int:
        return self.transformer_depths[level] if self.transformer_depths else self.transformer_depth

    def up_block_count(self, level: int) -> int:
        return self.up_blocks[level] if self.up_blocks else self.layers_per_block + 1

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_channels) - 1)


@dataclass
class TextEncoderConfig:
    vocab_size: int = 259
    max_length: int = 32
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    # "byte" (ids computed, no files) or "clip_bpe" (vocab and merges in the model's tokenizer/tokenizer.json)
    tokenizer: str = "byte"
    # The pooled output is the hidden state at the first eos_id (the byte tokenizer's is 2).
    eos_id: int = 2
    hidden_act: str = "gelu"  # or "quick_gelu" (CLIP)
    qkv_bias: bool = False  # CLIP: True

    def validate(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{where}: text_encoder.hidden_size must be divisible by num_heads")
        _check_choice(where, "text_encoder.tokenizer", self.tokenizer, TOKENIZERS)
        _check_choice(where, "text_encoder.hidden_act", self.hidden_act, ("gelu", "quick_gelu"))
        if self.tokenizer == "byte" and self.vocab_size < 259:
            raise ConfigError(f"{where}: text_encoder.vocab_size must be >= 259 for the byte tokenizer")
        if self.tokenizer == "byte" and self.eos_id != 2:
            raise ConfigError(f"{where}: text_encoder.eos_id must be 2 with the byte tokenizer")
        if not 0 <= self.eos_id < self.vocab_size:
            raise ConfigError(f"{where}: text_encoder.eos_id {self.eos_id} is outside the vocabulary")


@dataclass
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 4
    block_channels: tuple[int, ...] = (32, 32, 64, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    # Latents are multiplied by this after encoding so the UNet sees roughly unit variance.
    scaling_factor: float = 1.0
    # Defaults are our own VAE's; the SD VAE: nearest, biases, bottom_right, both 1x1 convs.
    upsample: str = "bilinear"
    attention_bias: bool = False  # q/k/v biases of the middle block's attention
    downsample_padding: str = "symmetric"  # encoder; "bottom_right" pads one row and column after
    quant_conv: bool = False  # 1x1 conv after the encoder
    post_quant_conv: bool = False  # 1x1 conv before the decoder

    def validate(self, where: str) -> None:
        for c in self.block_channels:
            if c % self.norm_groups:
                raise ConfigError(f"{where}: vae channel count {c} is not divisible by norm_groups {self.norm_groups}")
        _check_choice(where, "vae.upsample", self.upsample, UPSAMPLE_MODES)
        _check_choice(where, "vae.downsample_padding", self.downsample_padding, DOWNSAMPLE_PADDINGS)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_channels) - 1)


SCHEDULER_TYPES = ("rectified_flow", "ddim")
PREDICTION_TYPES = {"rectified_flow": ("velocity",), "ddim": ("epsilon", "v_prediction")}
BETA_SCHEDULES = ("scaled_linear", "linear")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


@dataclass
class SchedulerConfig:
    num_inference_steps: int = 4
    # SD3-style time shift: t' = s t / (1 + (s - 1) t); 1.0 means uniform steps.
    shift: float = 1.0
    # Fixed timesteps (t in (0, 1], descending) for a distilled model; empty means uniform in t.
    timesteps: tuple[float, ...] = ()
    # "rectified_flow" (our models) or "ddim": deterministic DDIM over a DDPM noise schedule (imported
    # SD-1.5-family image models, which predict "epsilon" or "v_prediction"). The DDPM fields below
    # mean what they mean in diffusers' scheduler_config.json; rectified flow ignores them.
    type: str = "rectified_flow"
    prediction_type: str = "velocity"
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = False

    def validate(self, where: str) -> None:
        _check_choice(where, "scheduler.type", self.type, SCHEDULER_TYPES)
        _check_choice(where, "scheduler.prediction_type", self.prediction_type, PREDICTION_TYPES[self.type])
        _check_choice(where, "scheduler.beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        _check_choice(where, "scheduler.timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        if self.num_train_timesteps < 2 or not 0 < self.beta_start <= self.beta_end < 1:
            raise ConfigError(f"{where}: scheduler needs num_train_timesteps >= 2 and 0 < beta_start <= beta_end < 1")


@dataclass
class ModelConfig:
    name: str
    unet: UNetConfig
    text_encoder: TextEncoderConfig
    vae: VAEConfig
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    height: int = 64
    width: int = 64
    num_frames: int = 8
    fps: int = 8
    # Classifier-free guidance scale used by default (1.0 = off; distilled models need none).
    guidance_scale: float = 1.0
    description: str = ""

    def validate(self, where: str) -> None:
        self.unet.validate(where)
        self.text_encoder.validate(where)
        self.vae.validate(where)
        self.scheduler.validate(where)
        self.check_size(self.height, self.width, self.num_frames, where)
        if self.unet.in_channels != self.vae.latent_channels:
            raise ConfigError(f"{where}: unet.in_channels must equal vae.latent_channels")

    @property
    def pixel_multiple(self) -> int:
        """Height and width must be multiples of this (VAE factor times UNet downsampling)."""
        return self.vae.downsample_factor * self.unet.downsample_factor

    def check_size(self, height: int, width: int, num_frames: int, where: str = "request") -> None:
        m = self.pixel_multiple
        if height <= 0 or width <= 0 or height % m or width % m:
            raise ConfigError(f"{where}: height and width must be positive multiples of {m}, got {height}x{width}")
        if not 1 <= num_frames <= self.unet.max_frames:
            raise ConfigError(f"{where}: num_frames must be in 1..{self.unet.max_frames}, got {num_frames}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: Any, where: str):
    """Build dataclass `cls` from plain data, rejecting unknown keys and wrong types with a clear error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}: {key}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(item, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def read_json(path: str | Path, error: type = ConfigError, what: str = "file"):
    """Parse a JSON file; a missing, unreadable or malformed one raises `error` naming the path.
    (NaN and Infinity parse; contract.validate refuses them, naming the field.)"""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: missing {what}")
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: truncated or invalid JSON ({e})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None



def preset_names() -> list[str]:
    files = resources.files("mobile_sdk").joinpath("presets").iterdir()
    return sorted(p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml"))


def load_preset(name: str) -> ModelConfig:
    """The named preset from mobile_sdk/presets/NAME.yaml."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
    text = resources.files("mobile_sdk").joinpath("presets", f"{name}.yaml").read_text()
    return config_from_yaml_text(text, f"preset {name}")


def load_config_file(path: str | Path) -> ModelConfig:
    path = Path(path)
    if path.suffix == ".json":
        return model_config_from_dict(read_json(path, what="config"), str(path))
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    return config_from_yaml_text(text, str(path))


def config_from_yaml_text(text: str, where: str) -> ModelConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None
    return model_config_from_dict(data, where)


def model_config_from_dict(data: Any, where: str) -> ModelConfig:
    cfg = from_dict(ModelConfig, data, where)
    cfg.validate(where)
    return cfg
