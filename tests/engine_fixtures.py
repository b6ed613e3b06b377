"""Session fixtures of the native engine's tests: one host build (and one with the JNI bridge) per
session, a tiny package shared with the rest of the suite, and helpers to run the engine's CLI.

Test modules import the fixtures they use by name (pytest registers fixtures found in a module).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_sdk.engine import build as engine_build

REPO = Path(__file__).resolve().parents[1]
JNI_DIR = REPO / "android_demo" / "app" / "src" / "main" / "cpp"
PROMPT = "a red circle moving right"


@pytest.fixture(scope="session")
def engine_cli() -> Path:
    return engine_build.cli_path("host", log=lambda _: None)


@pytest.fixture(scope="session")
def jni_build_dir() -> Path:
    return engine_build.build("host", jni_dir=JNI_DIR, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_engine_package(step_aware_package) -> Path:
    """The suite's tiny step-aware package (two UNet methods, plan_0 and plan_1), exported once."""
    return step_aware_package[1]


@pytest.fixture
def package_copy(tmp_path, tiny_engine_package):
    """A private copy of the tiny package that a test may corrupt."""
    def make(name: str = "copy.mobilepkg") -> Path:
        dest = tmp_path / name
        shutil.copytree(tiny_engine_package, dest)
        return dest
    return make


def run_cli(cli: Path, *args: str, check: bool = True, env: dict | None = None, prefix: list[str] | None = None):
    """Runs the engine's CLI; returns (returncode, JSON summary or None, stderr)."""
    proc = subprocess.run([*(prefix or []), str(cli), *map(str, args)], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"engine CLI failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    return proc.returncode, summary, proc.stderr


def python_frames(package: Path, prompt: str, seed: int, size: tuple[int, int, int] | None = None) -> np.ndarray:
    """The Python runtime's frames for the same prompt and portable-noise seed (uint8 [T, H, W, 3]), at one of
    the package's sizes (frames, height, width; default: its first)."""
    from mobile_sdk.noise import portable_normal
    from mobile_sdk.runtime import pipeline_from_package

    frames, height, width = size or (None, None, None)
    pipe = pipeline_from_package(package, num_frames=frames, height=height, width=width)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, latents=torch.from_numpy(portable_normal(seed, pipe.latent_shape()))).frames[0]


def psnr_u8(reference: np.ndarray, test: np.ndarray) -> float:
    assert reference.shape == test.shape, (reference.shape, test.shape)
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
