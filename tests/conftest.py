import os
import pytest
import torch

from mobile_sdk.config import load_preset
from mobile_sdk.pipeline import VideoPipeline

# Under pytest-xdist each of the two workers has a core of its own.
torch.set_num_threads(int(os.environ.get("MOBILE_SDK_TEST_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")))

# The suite runs on two pytest-xdist workers (README's test command: -n 2 --dist loadgroup). The
# tests of each expensive session fixture go to one worker, so each fixture is built once: the tiny
# step-aware package (~3.5 min) on one, the demo package, Core ML packages and host table (~4 min) on the
# other; the other tests are spread over both.
FIXTURE_GROUPS = (({"step_aware_package", "tiny_engine_package", "package_copy"}, "tiny_package"),
                  ({"demo_package", "coreml_packages", "host_run"}, "demo_coreml_host"))


@pytest.fixture
def tiny_config():
    return load_preset("tiny")


@pytest.fixture
def tiny_pipe():
    pipe = VideoPipeline.from_preset("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class CallRecorder:
    """Calls `fn` and keeps each call's inputs: what a pipeline feeds a component."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args):
        self.calls.append(tuple(a.clone() for a in args))
        return self.fn(*args)


def observe_calls(calls):
    """The palettization Observation of running each (module, example inputs) once, as the export's
    test vectors observe the components' calls."""
    from export.lowering.palettization import observing

    with observing([module for module, _ in calls]) as seen, torch.no_grad():
        for module, example in calls:
            module(*example)
    return seen


def randomize_temporal(unet, seed: int = 0) -> None:
    """Give the zero-initialised temporal layers non-zero weights, so tests can see them act."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name.startswith("temporal."):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


STEP_PLANS = [{"*": "attn1d", "mid.attn0": "attn3d"}] * 2 + [{"down0.*": "conv3d", "up0.*": "conv1d"}] * 2
EXTRA_SIZE = (4, 16, 32)  # frames, height, width: the step-aware package's second size (not square, on purpose)


def searched_plan(path, subnets, resolution=(32, 32)) -> str:
    """A plan file as `mobile-sdk search --space width,depth,resolution --step-aware` writes it: one
    sub-network per step, one resolution (what `export --plan` reads)."""
    import json

    steps = [{"plan": {}, "subnet": s.to_dict(), "resolution": {"height": resolution[0], "width": resolution[1]}}
             for s in subnets]
    path.write_text(json.dumps({"slots": {}, "search": {"steps": steps}}))
    return str(path)


@pytest.fixture(scope="session")
def step_aware_package(tmp_path_factory):
    """One ExecuTorch export shared by the session: a step-aware tiny model whose first two steps run one plan
    on the full network and the last two another plan on the smallest sub-network (as `export --plan` applies
    a step-aware search: two methods, plan_0 and plan_1), at the model's size and EXTRA_SIZE (two more UNet
    methods and a second decoder method), parity-checked, with its zip. Exported the low-memory way (a worker
    process per component, started beside the test vectors; the pipeline's weights released), so that path is
    what the engine, contract and replay tests read; the returned pipeline is a fresh copy of the same weights."""
    from export.nas.searched import apply_searched_subnets
    from export.lowering.package_writer import export_package
    from export.nas.elastic import SubNet

    root = tmp_path_factory.mktemp("pkg")
    cfg = load_preset("tiny").unet
    plan_file = searched_plan(root / "search.json", [SubNet.full(cfg)] * 2 + [SubNet.smallest(cfg)] * 2)

    def make():
        pipe = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
        for view in pipe.unet.views:
            randomize_temporal(view, seed=1)
        pipe = apply_searched_subnets(pipe, plan_file)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    path = root / "tiny.mobilepkg"
    manifest = export_package(make(), path, check=True, make_zip=True, preset="tiny", low_memory=True,
                              overlap=True, sizes=[EXTRA_SIZE], log=lambda s: None)
    return make(), path, manifest


@pytest.fixture(scope="session")
def coreml_packages(tmp_path_factory):
    """fp16 single-plan package, and a palettized 6-bit step-aware package with an extra size (--check:
    its palettized weights checked in PyTorch)."""
    from export.lowering.package_writer import export_package

    root = tmp_path_factory.mktemp("coreml")
    single = VideoPipeline.from_preset("tiny", seed=0)
    step_aware = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
    quiet = dict(log=lambda s: None, preset="tiny", targets=("coreml",))
    m1 = export_package(single, root / "fp16.mobilepkg", **quiet)
    m2 = export_package(step_aware, root / "pal6.mobilepkg", quantize="palettize6", sizes=[(8, 32, 32)], check=True, **quiet)
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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests marked macos need Core ML's runtime; say why they are skipped elsewhere. Tests of an
    expensive session fixture share its xdist group (FIXTURE_GROUPS)."""
    import platform

    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        group = next((name for fixtures, name in FIXTURE_GROUPS if used & fixtures), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if platform.system() == "Darwin":
        return
    skip = pytest.mark.skip(reason="needs macOS: Core ML cannot run models on this OS")
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)
