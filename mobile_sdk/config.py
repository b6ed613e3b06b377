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

from .errors import ConfigError


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

    def validate(self, where: str) -> None:
        n = len(self.block_channels)
        if n < 1:
            raise ConfigError(f"{where}: unet.block_channels must not be empty")
        if len(self.attention_stages) != n:
            raise ConfigError(
                f"{where}: unet.attention_stages has {len(self.attention_stages)} entries, "
                f"block_channels has {n}; they must match"
            )
        for c in self.block_channels:
            if c % self.norm_groups:
                raise ConfigError(f"{where}: unet channel count {c} is not divisible by norm_groups {self.norm_groups}")
            if c % self.head_dim:
                raise ConfigError(f"{where}: unet channel count {c} is not divisible by head_dim {self.head_dim}")
        if self.temporal_kernel % 2 != 1:
            raise ConfigError(f"{where}: unet.temporal_kernel must be odd, got {self.temporal_kernel}")

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
    tokenizer: str = "byte"

    def validate(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{where}: text_encoder.hidden_size must be divisible by num_heads")
        if self.tokenizer != "byte":
            raise ConfigError(f"{where}: text_encoder.tokenizer {self.tokenizer!r} is unknown; only 'byte' is supported")
        if self.vocab_size < 259:
            raise ConfigError(f"{where}: text_encoder.vocab_size must be >= 259 for the byte tokenizer")


@dataclass
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 4
    block_channels: tuple[int, ...] = (32, 32, 64, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    # Latents are multiplied by this after encoding so the UNet sees roughly unit variance.
    scaling_factor: float = 1.0

    def validate(self, where: str) -> None:
        for c in self.block_channels:
            if c % self.norm_groups:
                raise ConfigError(f"{where}: vae channel count {c} is not divisible by norm_groups {self.norm_groups}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_channels) - 1)


@dataclass
class SchedulerConfig:
    num_inference_steps: int = 4
    # SD3-style time shift: t' = s t / (1 + (s - 1) t); 1.0 means uniform steps.
    shift: float = 1.0
    # Fixed timesteps (t in (0, 1], descending) for a distilled model; empty means uniform in t.
    timesteps: tuple[float, ...] = ()


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
