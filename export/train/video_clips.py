"""Your own captioned clips as training data (`mobile-sdk train --data clips.jsonl`).

One JSON object a line: {"video": "clips/0001.mp4", "caption": "a tropical bird on a branch"}; a relative
path is relative to the JSONL file. Each clip gives the model's number of frames, taken from its start
every `stride` frames so that they play at the model's fps, scaled (aspect kept) to cover the model's
size and centre-cropped to it. A clip that cannot give them is an error naming it and the line.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mobile_sdk.errors import SDKError

from export.train.common import clips_to_tensor


@dataclass(frozen=True)
class Clip:
    video: Path
    caption: str
    line: int


def read_clip_list(path: str | Path) -> list[Clip]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SDKError(f"{path}: cannot read the clip list ({e})") from None
    clips = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as e:
            raise SDKError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("video"), str) and isinstance(entry.get("caption"), str)):
            raise SDKError(f'{path}:{n}: expected {{"video": "PATH", "caption": "TEXT"}}')
        video = (path.parent / entry["video"]).resolve()
        if not video.is_file():
            raise SDKError(f"{path}:{n}: {video}: no such file")
        clips.append(Clip(video, entry["caption"], n))
    if not clips:
        raise SDKError(f"{path}: no clips listed")
    return clips


def fingerprint(path: str | Path) -> str:
    """Of the clip list's text: a latent pool encoded from another list is not reused."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _fit(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    img = Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(img.crop((left, top, left + width, top + height)))


def load_clip(clip: Clip, source: Path, height: int, width: int, num_frames: int, fps: int) -> np.ndarray:
    """uint8 [num_frames, height, width, 3]."""
    import av

    where = f"{source}:{clip.line}: {clip.video}"
    try:
        with av.open(str(clip.video)) as container:
            if not container.streams.video:
                raise SDKError(f"{where}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or fps)
            stride = max(1, round(rate / fps))
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    frames.append(_fit(frame.to_ndarray(format="rgb24"), height, width))
                    if len(frames) == num_frames:
                        break
    except av.FFmpegError as e:
        raise SDKError(f"{where}: cannot decode ({e})") from None
    if len(frames) < num_frames:
        raise SDKError(f"{where}: gives {len(frames)} frames at {fps} fps (every {stride}th of {rate:g} fps); "
                       f"the model needs {num_frames}")
    return np.stack(frames)


class VideoClipStream:
    """The clips in list order, a batch at a time, in ClipStream's form ([B, T, 3, H, W] in [0, 1], captions)."""

    def __init__(self, path: str | Path, height: int, width: int, num_frames: int, fps: int, batch_size: int):
        self.path = Path(path)
        self.clips = read_clip_list(self.path)
        self.size = (height, width, num_frames, fps)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, k: int) -> tuple[torch.Tensor, list[str]]:
        chunk = self.clips[k * self.batch_size:(k + 1) * self.batch_size]
        frames = np.stack([load_clip(c, self.path, *self.size) for c in chunk])
        return clips_to_tensor(frames), [c.caption for c in chunk]
