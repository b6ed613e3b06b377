"""Inputs captured from real pipeline runs (every step), for int8 calibration and test vectors."""
from __future__ import annotations

import torch

from export.train.synthetic import all_prompts, prompt_for
from mobile_sdk.package import entry_names
from mobile_sdk.pipeline import VideoPipeline

(MAIN,) = entry_names(1)


class _Recorder:
    def __init__(self, fn, sink: list, split_batch: bool = True):
        self.fn, self.sink, self.split = fn, sink, split_batch

    def __call__(self, *args):
        n = args[0].shape[0]
        if self.split:
            for i in range(n):
                self.sink.append(tuple(a[i : i + 1].clone() for a in args))
        else:
            self.sink.append(tuple(a.clone() for a in args))
        return self.fn(*args)


class _RecordingUNet:
    def __init__(self, pipe: VideoPipeline, methods_of_steps: list[str], sinks: dict[str, list]):
        self.pipe, self.methods, self.sinks = pipe, methods_of_steps, sinks

    def for_step(self, step: int):
        return _Recorder(self.pipe.unet_for_step(step), self.sinks[self.methods[step]])


def default_prompts(n: int) -> list[str]:
    """n prompts spread over the synthetic vocabulary (what the demo model was trained on)."""
    targets = all_prompts()
    stride = max(1, len(targets) // n)
    return [prompt_for(*targets[(i * stride + i) % len(targets)]) for i in range(n)]


@torch.no_grad()
def capture_calibration(pipe: VideoPipeline, methods_of_steps: list[str], decoder_method: str, prompts: list[str],
                        size: tuple[int, int, int] | None = None, seed: int = 0,
                        max_decoder_frames: int = 16) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    """{"text_encoder/main": [...], "unet/<method>": [...], "vae_decoder/<decoder_method>": [...]} of batch-1
    input tuples, from runs at `size` (frames, height, width; default: the model's)."""
    text, decoder = [], []
    unet_sinks = {m: [] for m in dict.fromkeys(methods_of_steps)}
    original = pipe.text_encoder, pipe.unet, pipe.vae_decoder
    recording = VideoPipeline(pipe.config, _Recorder(pipe.text_encoder, text), _RecordingUNet(pipe, methods_of_steps, unet_sinks),
                              _Recorder(pipe.vae_decoder, decoder), pipe.tokenizer)
    recording.set_progress_bar_config(disable=True)
    frames, height, width = size or (None, None, None)
    try:
        for i, prompt in enumerate(prompts):
            recording(prompt, num_frames=frames, height=height, width=width, generator=torch.Generator().manual_seed(seed + i))
    finally:
        pipe.text_encoder, pipe.unet, pipe.vae_decoder = original
    step = max(1, len(decoder) // max_decoder_frames)
    return {f"text_encoder/{MAIN}": text, **{f"unet/{m}": v for m, v in unet_sinks.items()},
            f"vae_decoder/{decoder_method}": decoder[::step]}
