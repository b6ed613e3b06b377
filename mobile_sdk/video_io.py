"""Write frames as H.264 MP4 (PyAV), GIF (Pillow) or .npy (the exact uint8 frames), atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .errors import SDKError


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SDKError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


VIDEO_SUFFIXES = (".mp4", ".gif", ".npy")


def check_video_path(path: str | Path) -> Path:
    """Refuse an unknown extension or an unwritable folder before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SDKError(f"{path}: unknown output type {path.suffix or '(none)'!r}; use {', '.join(VIDEO_SUFFIXES)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SDKError(f"{path}: cannot create its folder ({e.strerror})") from None
    if path.is_dir():
        raise SDKError(f"{path}: is a folder")
    return path


def export_to_video(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """uint8 frames [T, H, W, 3] -> H.264 MP4 (yuv420p; odd sizes are padded to even by repeating edges),
    GIF, or .npy holding the frames exactly (to compare runtimes frame for frame)."""
    import av

    frames = _check_frames(frames)
    path = check_video_path(path)
    if path.suffix.lower() == ".gif":
        return export_to_gif(frames, path, fps)
    if path.suffix.lower() == ".npy":
        with atomic_file(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, frames, allow_pickle=False)
        return path
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = h + h % 2, w + w % 2
    with atomic_file(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "12", "preset": "medium"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def export_to_gif(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    from PIL import Image

    frames = _check_frames(frames)
    images = [Image.fromarray(f) for f in frames]
    path = Path(path)
    with atomic_file(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Decode a video file to uint8 [T, H, W, 3] (used by tests and quality checks)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
