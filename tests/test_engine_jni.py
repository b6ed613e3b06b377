"""The JNI bridge (android_demo/app/src/main/cpp/mvd_jni.cpp) on the host JDK: a Java harness with the
app's class names (tests/jni_harness/) gives the CLI's frames byte for byte, and a broken package or a
cancelled generation is an EngineException, not a crash."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.engine_fixtures import (  # noqa: F401 - fixtures
    PROMPT, engine_cli, jni_build_dir, package_copy, run_cli, tiny_engine_package,
)

from tests.conftest import EXTRA_SIZE

HARNESS = Path(__file__).resolve().parent / "jni_harness"
SCHEMA = Path(__file__).resolve().parents[1] / "mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json"

pytestmark = pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                                reason="needs a JDK (javac and java) for the JNI harness")


@pytest.fixture(scope="session")
def harness(tmp_path_factory, jni_build_dir):
    """Compiles the harness; returns a function running it (args -> CompletedProcess)."""
    classes = tmp_path_factory.mktemp("jni-classes")
    sources = sorted(str(p) for p in HARNESS.rglob("*.java"))
    subprocess.run(["javac", "-d", str(classes), *sources], check=True, capture_output=True)
    library_dir = next(jni_build_dir.rglob("libmvd_jni.so")).parent

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run(["java", f"-Djava.library.path={library_dir}", "-cp", str(classes), "Harness",
                               *map(str, args)], capture_output=True, text=True, timeout=600)
    return run


def _frames_match(harness, engine_cli, package: Path, tmp_path: Path, seed: int) -> None:
    proc = harness("generate", package, PROMPT, seed, tmp_path / "jni.rgb")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_cli(engine_cli, "--package", package, "--prompt", PROMPT, "--seed", seed, "--threads", 2, "--out", tmp_path / "cli.rgb")
    assert (tmp_path / "jni.rgb").read_bytes() == (tmp_path / "cli.rgb").read_bytes()
    out = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    info, timings = json.loads(out["info"]), json.loads(out["timings"])
    manifest = json.loads((package / "manifest.json").read_text())
    assert (info["frames"], info["height"], info["width"], info["steps"]) == (
        manifest["video"]["num_frames"], manifest["video"]["height"], manifest["video"]["width"], len(manifest["steps"]))
    assert (tmp_path / "jni.rgb").stat().st_size == info["frames"] * info["height"] * info["width"] * 3
    assert int(out["steps_seen"]) == info["steps"] == len(timings["steps_ms"])


def test_jni_frames_equal_the_cli_frames(harness, engine_cli, tiny_engine_package, tmp_path):
    _frames_match(harness, engine_cli, tiny_engine_package, tmp_path, 2**64 - 1)  # the seed's top bit survives the Long


def test_jni_opens_a_package_at_one_of_its_sizes(harness, engine_cli, tiny_engine_package, tmp_path):
    """The size travels through NativeEngine.open (0: the default's); videoInfo lists every size."""
    proc = harness("generate", tiny_engine_package, PROMPT, 3, tmp_path / "jni.rgb", *EXTRA_SIZE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f, h, w = EXTRA_SIZE
    run_cli(engine_cli, "--package", tiny_engine_package, "--prompt", PROMPT, "--seed", 3, "--threads", 2,
            "--frames", f, "--height", h, "--width", w, "--out", tmp_path / "cli.rgb")
    assert (tmp_path / "jni.rgb").read_bytes() == (tmp_path / "cli.rgb").read_bytes()
    info = json.loads(dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())["info"])
    assert (info["frames"], info["height"], info["width"]) == EXTRA_SIZE
    assert info["sizes"] == [[4, 32, 32], list(EXTRA_SIZE)]
    proc = harness("generate", tiny_engine_package, PROMPT, 3, tmp_path / "no.rgb", 4, 64, 64)
    assert proc.returncode == 3 and "EngineException:" in proc.stdout and "no size 4x64x64" in proc.stdout


@pytest.mark.slow
def test_jni_frames_equal_the_cli_frames_demo(harness, engine_cli, demo_package, tmp_path):
    _frames_match(harness, engine_cli, demo_package, tmp_path, 7)


def test_jni_corrupted_package_is_an_engine_exception(harness, package_copy):
    pkg = package_copy()
    p = pkg / "executorch/unet.pte"
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    proc = harness("open", pkg)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the harness's exit for a caught EngineException
    assert "EngineException:" in proc.stdout and "unet.pte: sha256 mismatch" in proc.stdout


@pytest.mark.parametrize("mode, message", [("cancel", "cancelled by the progress callback after step 1 of 4"),
                                           ("cancel-flag", "cancelled before a UNet call (after step 1 of 4)")])
def test_jni_cancel_is_an_engine_exception(harness, tiny_engine_package, mode, message):
    proc = harness(mode, tiny_engine_package, PROMPT, 1)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert message in proc.stdout


def test_jni_benchmark_validates_against_the_schema(harness, tiny_engine_package):
    proc = harness("benchmark", tiny_engine_package, PROMPT, 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert doc["runs"] == 2 and doc["warmup"] == 1 and doc["seed"] == 3
