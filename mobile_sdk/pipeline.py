"""VideoPipeline: prompt -> text encoder -> 4 rectified-flow steps of the UNet -> per-frame VAE decode.

The loop calls its components only through their forward signatures, so the same loop runs eager
PyTorch modules or exported programs (see mobile_sdk.runtime):
  text_encoder(ids [B, L]) -> (hidden [B, L, D], pooled [B, D])
  unet(latents [B, C, T, h, w], t [B], hidden) -> velocity
  vae_decoder(latents [N, C, h, w]) -> RGB [N, 3, H, W] in [0, 1]
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .atomic import atomic_dir
from .config import ModelConfig, SchedulerConfig, from_dict, load_preset, read_json
from .contract.validate import validate_document
from .errors import ConfigError, GenerationCancelled, WeightsError
from .models import AutoencoderKL, ByteTokenizer, TextEncoder, VAEDecoder, VideoUNet
from .models.text_encoder import tokenizer_from_dict
from .models.step_aware import StepAwareUNet
from .plan import PlanLike, StepPlans
from .scheduler import make_scheduler

MODEL_INDEX = "model_index.json"
EAGER_DECODE_PIXELS = 1 << 18  # output pixels per eager decoder call (all frames of small models)
TOKENIZER_FILE = "tokenizer/tokenizer.json"  # BPE tokenizers only (the byte tokenizer needs no file)
MODEL_FORMAT = "mobile-sdk-model"
MODEL_FORMAT_VERSION = 1
INDEX_FIELDS = ("name", "height", "width", "num_frames", "fps", "guidance_scale", "description")

# callback(step_index, timestep, latents) -> return False to cancel the generation.
StepCallback = Callable[[int, float, torch.Tensor], "bool | None"]


@dataclass
class VideoPipelineOutput:
    frames: np.ndarray | None  # uint8 [B, T, H, W, 3]; None with output_type="latent"
    latents: torch.Tensor  # final latents [B, C, T, h, w]
    timings_ms: dict[str, float] = field(default_factory=dict)


class VideoPipeline:
    def __init__(self, config: ModelConfig, text_encoder, unet, vae_decoder, tokenizer: ByteTokenizer, trained: bool = True):
        self.config = config
        self.text_encoder, self.unet, self.vae_decoder, self.tokenizer = text_encoder, unet, vae_decoder, tokenizer
        self.scheduler = make_scheduler(config.scheduler)
        self.trained = trained
        # Exported programs have static shapes: (num_frames, height, width) they accept, if fixed.
        self.fixed_size: tuple[int, int, int] | None = None
        self.fixed_steps: int | None = None  # a package's step table is fixed too
        self._progress = True

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, plan: PlanLike | None = None) -> "VideoPipeline":
        """Fresh (untrained) components, initialised deterministically from `seed`.

        `plan` is one plan spec, a list of specs (one per denoising step: a step-aware UNet), or StepPlans.
        """
        step_plans = StepPlans.of(plan) if plan is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = VideoUNet(config.unet, plan=step_plans.specs[0] if step_plans else None).eval()
            if step_plans and step_plans.step_aware:
                unet = StepAwareUNet.from_plans(unet, step_plans.per_step(config.scheduler.num_inference_steps)).eval()
            text_encoder = TextEncoder(config.text_encoder).eval()
            vae = AutoencoderKL(config.vae).eval()
        base = unet.views[0] if isinstance(unet, StepAwareUNet) else unet
        config = dataclasses.replace(config, unet=base.config)
        return cls(config, text_encoder, unet, VAEDecoder(vae), text_encoder.tokenizer(), trained=False)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, plan: PlanLike | None = None) -> "VideoPipeline":
        return cls.from_config(load_preset(name), seed=seed, plan=plan)

    def with_step_plans(self, plans: PlanLike) -> "VideoPipeline":
        """The same weights with one plan per step (one plan is used for every step). Slots given an op
        the model has no weights for get fresh identity layers, listed in `unet.untrained_layers`."""
        specs = StepPlans.of(plans).per_step(self.config.scheduler.num_inference_steps)
        unet = StepAwareUNet.from_plans(self.unet, specs).eval()
        return VideoPipeline(self.config, self.text_encoder, unet, self.vae_decoder, self.tokenizer, self.trained)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "VideoPipeline":
        directory = Path(directory)
        index_path = directory / MODEL_INDEX
        if not index_path.is_file():
            raise WeightsError(f"{index_path}: missing; {directory} is not a model folder (see save_pretrained)")
        index = read_json(index_path, what="model index")
        if not isinstance(index, dict) or index.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{index_path}: format {index.get('format') if isinstance(index, dict) else None!r} "
                              f"is not {MODEL_FORMAT!r} version {MODEL_FORMAT_VERSION}")
        validate_document(index, "model_index", index_path, ConfigError)
        unet = VideoUNet.from_pretrained(directory / "unet")
        text_encoder = TextEncoder.from_pretrained(directory / "text_encoder")
        tokenizer = text_encoder.tokenizer() if text_encoder.config.tokenizer == "byte" else _read_tokenizer(directory)
        vae = AutoencoderKL.from_pretrained(directory / "vae")
        fields = {k: index[k] for k in INDEX_FIELDS if k in index}
        config = ModelConfig(
            unet=unet.config,
            text_encoder=text_encoder.config,
            vae=vae.config,
            scheduler=from_dict(SchedulerConfig, index.get("scheduler", {}), f"{index_path}: scheduler"),
            **fields,
        )
        config.validate(str(index_path))
        return cls(config, text_encoder, unet, VAEDecoder(vae), tokenizer, trained=bool(index.get("trained", True)))

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None, extra: dict | None = None) -> None:
        """model_index.json + unet/, text_encoder/, vae/ (each config.json + model.safetensors), atomically.

        `dtype=torch.float16` halves the files (weights load back into fp32); `extra` adds provenance.
        """
        cfg = self.config
        index = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "sdk_version": __version__,
            **{k: getattr(cfg, k) for k in INDEX_FIELDS},
            "scheduler": dataclasses.asdict(cfg.scheduler),
            "trained": self.trained,
            "weights_dtype": str(dtype or torch.float32).replace("torch.", ""),
            **(extra or {}),
        }
        with atomic_dir(directory) as tmp:
            (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
            self.unet.write_pretrained(tmp / "unet", dtype)
            self.text_encoder.write_pretrained(tmp / "text_encoder", dtype)
            self.vae_decoder.vae.write_pretrained(tmp / "vae", dtype)
            if cfg.text_encoder.tokenizer != "byte":  # a vocabulary: the same document a package carries
                (tmp / TOKENIZER_FILE).parent.mkdir()
                (tmp / TOKENIZER_FILE).write_text(json.dumps(self.tokenizer.to_dict(), ensure_ascii=False) + "\n")

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self._progress = not disable

    # ---- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        latents: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        output_type: str = "np",
    ) -> VideoPipelineOutput:
        """`output_type="latent"` stops before the decoder (frames None), as diffusers' pipelines do."""
        cfg = self.config
        steps = num_inference_steps or cfg.scheduler.num_inference_steps
        num_frames, height, width = num_frames or cfg.num_frames, height or cfg.height, width or cfg.width
        cfg.check_size(height, width, num_frames)
        if output_type not in ("np", "latent"):
            raise ConfigError(f"output_type {output_type!r}: choose 'np' (uint8 frames) or 'latent'")
        if self.fixed_steps and steps != self.fixed_steps:
            raise ConfigError(f"this package was exported for {self.fixed_steps} denoising steps; got {steps}")
        if self.fixed_size and (num_frames, height, width) != self.fixed_size:
            f, h, w = self.fixed_size
            raise ConfigError(f"this package was exported for {f} frames at {w}x{h}; got {num_frames} frames at {width}x{height}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        timings: dict[str, float] = {}

        guidance = cfg.guidance_scale if guidance_scale is None else guidance_scale

        start = time.perf_counter()
        hidden, _ = self.text_encoder(self.tokenizer(prompts))
        uncond = self.text_encoder(self.tokenizer([""] * len(prompts)))[0] if guidance != 1.0 else None
        timings["text_encoder_ms"] = (time.perf_counter() - start) * 1e3

        shape = self.latent_shape(num_frames, height, width, batch=len(prompts))
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ConfigError(f"latents must have shape {list(shape)}, got {list(latents.shape)}")

        self.scheduler.set_timesteps(steps)
        start = time.perf_counter()
        for i, t in enumerate(tqdm(self.scheduler.timesteps, desc="denoising", disable=not self._progress)):
            t_batch = torch.full((len(prompts),), t, dtype=torch.float32)
            unet = self.velocity_for_step(i)
            velocity = unet(latents, t_batch, hidden)
            if uncond is not None:  # classifier-free guidance, as two calls so fixed-batch programs work too
                v_uncond = unet(latents, t_batch, uncond)
                velocity = v_uncond + guidance * (velocity - v_uncond)
            latents = self.scheduler.step(velocity, t, latents).prev_sample
            if callback is not None and callback(i, t, latents) is False:
                raise GenerationCancelled(f"generation cancelled by the callback after step {i + 1} of {steps}")
        timings["denoise_ms"] = (time.perf_counter() - start) * 1e3

        if output_type == "latent":
            return VideoPipelineOutput(frames=None, latents=latents, timings_ms=timings)
        start = time.perf_counter()
        frames = self.decode(latents)
        timings["vae_decoder_ms"] = (time.perf_counter() - start) * 1e3
        return VideoPipelineOutput(frames=frames, latents=latents, timings_ms=timings)

    def latent_shape(self, num_frames: int | None = None, height: int | None = None, width: int | None = None,
                     batch: int = 1) -> tuple[int, int, int, int, int]:
        """[B, C, T, h, w] of the initial noise (the model's own size for what is not given)."""
        cfg = self.config
        f = cfg.vae.downsample_factor
        return (batch, cfg.vae.latent_channels, num_frames or cfg.num_frames, (height or cfg.height) // f,
                (width or cfg.width) // f)

    def unet_for_step(self, step: int):
        """The UNet of denoising step `step` (step-aware models run a different plan per step)."""
        return self.unet.for_step(step) if hasattr(self.unet, "for_step") else self.unet

    def velocity_for_step(self, step: int):
        """What step `step` calls for the velocity: its UNet, converted by the scheduler (DDIM's)."""
        return self.scheduler.velocity_model(self.unet_for_step(step))

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """[B, C, T, h, w] latents -> uint8 [B, T, H, W, 3], in chunks the decoder accepts."""
        b, c, t, h, w = latents.shape
        flat = frame_latents(latents)
        # Programs take what they were exported for; eager decodes as many frames at once as keep each
        # activation small (a 16-frame 512x320 batch would hold GBs per tensor: the 0.6B export's old peak).
        f = self.config.vae.downsample_factor
        chunk = getattr(self.vae_decoder, "frames_per_call", None) or max(1, EAGER_DECODE_PIXELS // (h * w * f * f))
        images = torch.cat([self.vae_decoder(flat[i : i + chunk]) for i in range(0, b * t, chunk)])
        rgb = (images.clamp(0, 1) * 255.0).round().to(torch.uint8)
        return rgb.reshape(b, t, 3, images.shape[-2], images.shape[-1]).permute(0, 1, 3, 4, 2).numpy()


def frame_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, T, h, w] video latents -> [B * T, C, h, w]: the frames the decoder takes, video by video."""
    return latents.permute(0, 2, 1, 3, 4).flatten(0, 1)


def _read_tokenizer(directory: Path):
    path = directory / TOKENIZER_FILE
    spec = read_json(path, WeightsError, "tokenizer")
    validate_document(spec, "tokenizer", path, ConfigError)
    return tokenizer_from_dict(spec)
