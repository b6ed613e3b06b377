"""The demo model shipped inside the SDK (trained here on the synthetic shapes data; see README)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import SDKError

DEMO_MODEL = "small-4step"


def default_model_dir() -> Path:
    path = Path(str(resources.files("mobile_sdk.weights").joinpath(DEMO_MODEL)))
    if not (path / "model_index.json").is_file():
        raise SDKError(f"{path}: the shipped demo model is missing; pass --model DIR or --preset NAME")
    return path
