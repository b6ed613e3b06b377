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


STEP_PLANS = [{"*": "attn1d", "mid.attn0": "attn3d"}] * 2 + [{"down0.*": "conv3d", "up0.*": "conv1d"}] * 2


@pytest.fixture(scope="session")
def step_aware_package(tmp_path_factory):
    """One ExecuTorch export shared by the session: a step-aware tiny model (two distinct plans -> two
    methods), parity-checked, with its zip. Exported the low-memory way (a worker process per component,
    the pipeline's weights released), so that path is what the engine, contract and replay tests read;
    the returned pipeline is a fresh copy of the same weights."""
    from export.lowering.package_writer import export_package

    def make():
        pipe = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
        for view in pipe.unet.views:
            randomize_temporal(view, seed=1)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    path = tmp_path_factory.mktemp("pkg") / "tiny.mobilepkg"
    manifest = export_package(make(), path, check=True, make_zip=True, preset="tiny", low_memory=True,
                              log=lambda s: None)
    return make(), path, manifest


@pytest.fixture(scope="session")
def coreml_packages(tmp_path_factory):
    """fp16 single-plan package, and a palettized 6-bit step-aware package with an extra size."""
    from export.lowering.coreml import CoreMLOptions
    from export.lowering.package_writer import export_package

    root = tmp_path_factory.mktemp("coreml")
    single = VideoPipeline.from_preset("tiny", seed=0)
    step_aware = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
    quiet = dict(log=lambda s: None, preset="tiny", targets=("coreml",))
    m1 = export_package(single, root / "fp16.mobilepkg", **quiet)
    m2 = export_package(step_aware, root / "pal6.mobilepkg", quantize="palettize6",
                        coreml_options=CoreMLOptions(extra_sizes=[(8, 32, 32)]), **quiet)
    return (single, root / "fp16.mobilepkg", m1), (step_aware, root / "pal6.mobilepkg", m2)


@pytest.fixture(scope="session")
def demo_package(tmp_path_factory):
    """The shipped demo model as an ExecuTorch package (what the README's main job makes), exported once."""
    from export.lowering.package_writer import export_package
    from mobile_sdk.weights import default_model_dir

    pipe = VideoPipeline.from_pretrained(default_model_dir())
    pipe.set_progress_bar_config(disable=True)
    path = tmp_path_factory.mktemp("demo") / "small.mobilepkg"
    export_package(pipe, path, log=lambda s: None)
    return path


@pytest.fixture(scope="session")
def tiny_blocks_session():
    from export.nas.model_blocks import model_blocks

    return model_blocks(load_preset("tiny"))


@pytest.fixture(scope="session")
def host_run(tmp_path_factory, tiny_blocks_session):
    """A host latency table of the tiny preset measured by our runner (fast settings), shared by the session."""
    from profiling.devices import HostDevice
    from profiling.harness import profile

    root = tmp_path_factory.mktemp("host")
    table = profile(tiny_blocks_session, HostDevice(log=lambda _: None), root / "tiny.json", preset="tiny",
                    work_dir=root / "programs", etdump_dir=root / "etdump", progress=False, log=lambda _: None,
                    **FAST_PROFILE)
    return root, table


FAST_PROFILE = dict(warmup=1, runs=5, threads=1, rounds=2)


def pytest_collection_modifyitems(config, items):
    """Tests marked macos need Core ML's runtime; say why they are skipped elsewhere."""
    import platform

    if platform.system() == "Darwin":
        return
    skip = pytest.mark.skip(reason="needs macOS: Core ML cannot run models on this OS")
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)
