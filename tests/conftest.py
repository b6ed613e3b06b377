import os
import pytest
import torch

from mobile_sdk.config import load_preset
from mobile_sdk.pipeline import VideoPipeline

torch.set_num_threads(int(os.environ.get("MOBILE_SDK_TEST_THREADS", "2")))


@pytest.fixture
def tiny_config():
    return load_preset("tiny")


@pytest.fixture
def tiny_pipe():
    pipe = VideoPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def randomize_temporal(unet, seed: int = 0) -> None:
    """Give the zero-initialised temporal layers non-zero weights, so tests can see them act."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name.startswith("temporal."):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def pytest_collection_modifyitems(config, items):
    """Tests marked macos need Core ML's runtime; say why they are skipped elsewhere."""
    import platform

    if platform.system() == "Darwin":
        return
    skip = pytest.mark.skip(reason="needs macOS: Core ML cannot run models on this OS")
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)
