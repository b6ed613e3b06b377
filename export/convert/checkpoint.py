"""Reading a diffusers-format folder safely: JSON configs and safetensors weights only, never pickle."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mobile_sdk.config import read_json
from mobile_sdk.errors import SDKError

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


class ConversionError(SDKError):
    """A checkpoint is missing, unsafe (pickle-only) or of an architecture we cannot express exactly."""


def read_config(folder: Path, name: str = "config.json") -> dict:
    data = read_json(folder / name, ConversionError, "config")
    if not isinstance(data, dict):
        raise ConversionError(f"{folder / name}: expected a JSON object")
    return data


def read_weights(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    """`stem`.safetensors in `folder` (or its fp16 variant); a pickle-only folder is refused, unread."""
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        path = folder / name
        if path.is_file():
            try:
                return load_file(str(path))
            except (SafetensorError, OSError, ValueError) as e:
                raise ConversionError(f"{path}: not a readable safetensors file ({e})") from None
    if (folder / f"{stem}.safetensors.index.json").is_file():
        raise ConversionError(f"{folder}: sharded weights ({stem}.safetensors.index.json) are not supported; "
                              f"save the component as one safetensors file")
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickled:
        raise ConversionError(f"{folder / pickled[0]}: pickle checkpoints are never loaded (they can run code); "
                              f"convert it to safetensors first (e.g. save_pretrained(..., safe_serialization=True))")
    raise ConversionError(f"{folder / (stem + '.safetensors')}: missing weights file")


def require(condition: bool, where: Path, message: str) -> None:
    if not condition:
        raise ConversionError(f"{where}: {message}")
