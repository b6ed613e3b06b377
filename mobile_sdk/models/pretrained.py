"""save_pretrained / from_pretrained for local folders: config.json + model.safetensors, no pickle."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_dir
from ..config import from_dict, read_json
from ..errors import WeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PretrainedMixin:
    """Mixed into nn.Modules that have `config` (a dataclass) and a class attribute `config_class`."""

    config_class: type
    component: str

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        with atomic_dir(directory) as tmp:
            self.write_pretrained(tmp, dtype)

    def write_pretrained(self, directory: Path, dtype: torch.dtype | None = None) -> None:
        """Write into a folder (used by atomic writers of larger bundles); `dtype` (e.g. fp16) shrinks the file."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu().to(dtype or v.dtype) for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "component": self.component})

    @classmethod
    def from_pretrained(cls, directory: str | Path):
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise WeightsError(f"{config_path}: missing (a {cls.component} folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        data = read_json(config_path, what=f"{cls.component} config")
        config = from_dict(cls.config_class, data, str(config_path))
        config.validate(str(config_path))
        model = cls(config)
        model.load_weights(directory / WEIGHTS_NAME)
        return model.eval()

    def load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise WeightsError(f"{path}: missing weights file")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise WeightsError(
                f"{path}: weights do not match the {self.component} config: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        for key, value in state.items():
            if value.shape != own[key].shape:
                raise WeightsError(f"{path}: {key} has shape {tuple(value.shape)}, the config needs {tuple(own[key].shape)}")
        with torch.no_grad():  # load_state_dict casts, so fp16 files load into fp32 models
            self.load_state_dict(state, strict=True)
