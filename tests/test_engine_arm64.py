"""The engine cross-built for arm64 Linux and run under qemu: the same noise bits and (nearly) the same
frames as the host engine. Needs mobile_sdk/engine/setup_arm64.sh once (toolchain, qemu, the aarch64
executorch wheel); nothing is downloaded here. Emulated runs are never timed."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_sdk.engine import build as engine_build
from mobile_sdk.noise import portable_normal
from tests.engine_fixtures import PROMPT, engine_cli, psnr_u8, run_cli  # noqa: F401 - fixtures

MISSING = engine_build.arm64_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"arm64 toolchain missing: {MISSING}")


@pytest.fixture(scope="session")
def arm64_cli():
    return engine_build.cli_path("arm64", log=lambda _: None)


def run_arm64(cli, *args, check=True):
    return run_cli(cli, *args, check=check, env=engine_build.run_env("arm64"),
                   prefix=engine_build.run_command(cli, "arm64")[:-1])


@pytest.mark.slow
def test_arm64_noise_is_bit_identical(arm64_cli, tmp_path):
    """aarch64 GCC fuses multiply-adds unless told not to; the build's -ffp-contract=off must hold."""
    for seed in (0, 2**64 - 1):
        run_arm64(arm64_cli, "--noise", seed, "--count", 100_000, "--out", tmp_path / "n.npy")
        assert np.array_equal(np.load(tmp_path / "n.npy").view(np.uint32), portable_normal(seed, (100_000,)).view(np.uint32))


@pytest.mark.slow
def test_arm64_demo_frames_match_the_host_engine(arm64_cli, engine_cli, demo_package, tmp_path):
    run_cli(engine_cli, "--package", demo_package, "--prompt", PROMPT, "--seed", 7, "--out", tmp_path / "host.npy")
    run_arm64(arm64_cli, "--package", demo_package, "--prompt", PROMPT, "--seed", 7, "--out", tmp_path / "arm64.npy")
    host, arm = np.load(tmp_path / "host.npy"), np.load(tmp_path / "arm64.npy")
    assert psnr_u8(host, arm) >= 40.0


@pytest.mark.slow
def test_arm64_benchmark_is_marked_emulated(arm64_cli, step_aware_package, tmp_path):
    out = tmp_path / "bench.json"
    run_arm64(arm64_cli, "--package", step_aware_package[1], "--prompt", PROMPT, "--benchmark", out,
              "--warmup", 0, "--runs", 1, "--emulated")
    import json

    doc = json.loads(out.read_text())
    assert doc["device"]["abi"] == "arm64" and doc["device"]["emulated"] is True
