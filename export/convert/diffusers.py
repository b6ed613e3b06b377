"""`mobile-sdk import --diffusers DIR`: an SD-1.5-family diffusers folder (model_index.json, unet/,
text_encoder/, tokenizer/, vae/, scheduler/; safetensors only, read from disk) -> our model folder.

The checkpoint's layers become the spatial layers; the temporal slots follow the plan and start as the
identity, so until they are trained every frame is the image model's output for that frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from mobile_sdk.config import ModelConfig
from mobile_sdk.models import AutoencoderKL, TextEncoder, VAEDecoder, VideoUNet
from mobile_sdk.pipeline import MODEL_INDEX, VideoPipeline

from .checkpoint import ConversionError, read_config, read_weights, require
from .clip import text_encoder_config, text_encoder_state
from .scheduler import scheduler_config
from .tokenizer import read_clip_tokenizer
from .unet import unet_config, unet_state
from .vae import vae_config, vae_state

COMPONENTS = {  # folder -> (library class names accepted in model_index.json)
    "unet": ("UNet2DConditionModel",),
    "text_encoder": ("CLIPTextModel", "CLIPTextModelWithProjection"),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "vae": ("AutoencoderKL",),
    "scheduler": None,  # checked from its own config
}
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 7.5  # an image model needs classifier-free guidance until it is distilled


def _check_index(src: Path) -> dict:
    index = read_config(src, MODEL_INDEX)
    for name, classes in COMPONENTS.items():
        entry = index.get(name)
        require(isinstance(entry, list) and len(entry) == 2 and entry[1], src / MODEL_INDEX,
                f"no {name!r} component (SD-1.5-family pipelines have {', '.join(COMPONENTS)})")
        if classes is not None:
            require(entry[1] in classes, src / MODEL_INDEX, f"{name} is a {entry[1]}; supported: {', '.join(classes)}")
        require((src / name).is_dir(), src / name, "missing component folder")
    return index


def _mapped(mapping, path: Path, *args):
    """Our config from a component's JSON config; a malformed value is an error naming the file."""
    try:
        return mapping(read_config(path.parent, path.name), path, *args)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConversionError(f"{path}: unexpected or malformed config value ({type(e).__name__}: {e})") from None


def _load(module: nn.Module, state: dict[str, torch.Tensor], where: Path, new: str | None = None) -> None:
    """Load converted weights; only keys under `new` (fresh temporal layers) may be absent."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not (new and k.startswith(new)))
    unexpected = sorted(k for k in state if k not in own)
    require(not missing and not unexpected, where,
            f"weights do not match the config: missing {missing[:4]}, unexpected {unexpected[:4]}")
    for key, value in state.items():
        require(value.shape == own[key].shape, where,
                f"{key} has shape {tuple(value.shape)}, the config needs {tuple(own[key].shape)}")
    with torch.no_grad():
        module.load_state_dict(state, strict=False)


def convert_diffusers(src: str | Path, plan: Mapping[str, str] | None = None, num_frames: int = 8,
                      height: int | None = None, width: int | None = None, steps: int = DEFAULT_STEPS,
                      guidance_scale: float = DEFAULT_GUIDANCE) -> VideoPipeline:
    """The video pipeline of a diffusers checkpoint folder (nothing written)."""
    src = Path(src)
    require(src.is_dir(), src, "not a folder (a diffusers checkpoint folder with model_index.json)")
    index = _check_index(src)
    unet_cfg = _mapped(unet_config, src / "unet" / "config.json")
    tokenizer = read_clip_tokenizer(src / "tokenizer")
    text_cfg = _mapped(text_encoder_config, src / "text_encoder" / "config.json", tokenizer.max_length, tokenizer.eos_id)
    vae_cfg = _mapped(vae_config, src / "vae" / "config.json")
    sched_cfg = _mapped(scheduler_config, src / "scheduler" / "scheduler_config.json", steps)
    sample_size = read_config(src / "unet").get("sample_size", 64)
    side = (sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size) * vae_cfg.downsample_factor
    config = ModelConfig(
        name=src.name, unet=unet_cfg, text_encoder=text_cfg, vae=vae_cfg, scheduler=sched_cfg,
        height=height or side, width=width or side, num_frames=num_frames, guidance_scale=guidance_scale,
        description=f"imported from a diffusers {index.get('_class_name', 'pipeline')} ({src.name}); "
                    f"temporal layers untrained (identity)",
    )
    config.validate(f"{src} (imported config)")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the fresh temporal layers' norms and projections
        unet = VideoUNet(unet_cfg, plan=plan).eval()
    text_encoder, vae = TextEncoder(text_cfg).eval(), AutoencoderKL(vae_cfg).eval()
    _load(unet, unet_state(read_weights(src / "unet", "diffusion_pytorch_model"), unet_cfg), src / "unet", new="temporal.")
    _load(text_encoder, text_encoder_state(read_weights(src / "text_encoder", "model"), text_cfg), src / "text_encoder")
    _load(vae, vae_state(read_weights(src / "vae", "diffusion_pytorch_model"), vae_cfg), src / "vae")
    config.unet = unet.config
    return VideoPipeline(config, text_encoder, unet, VAEDecoder(vae), tokenizer, trained=True)


def import_diffusers(src: str | Path, out: str | Path, overwrite: bool = False, log: Callable[[str], None] = print,
                     **options) -> VideoPipeline:
    """Convert `src` and write our model folder at `out` (atomically; an existing model folder only with
    `overwrite`, anything else never)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not (out.is_dir() and (out / MODEL_INDEX).is_file()):
            raise ConversionError(f"{out}: exists and is not a model folder; refusing to replace it")
        if not overwrite:
            raise ConversionError(f"{out}: a model folder is already there; pass --overwrite to replace it")
    pipe = convert_diffusers(src, **options)
    pipe.save_pretrained(out, extra={"imported_from": {"format": "diffusers", "path": str(Path(src).resolve())}})
    counts = {op: n for op, n in pipe.unet.plan.counts().items() if op != "none" and n}
    log(f"imported {src} -> {out}: UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.1f}M parameters, "
        f"temporal layers {counts or 'none'}, {pipe.config.scheduler.type} ({pipe.config.scheduler.prediction_type}), "
        f"{pipe.config.num_frames} frames at {pipe.config.width}x{pipe.config.height}")
    return pipe
