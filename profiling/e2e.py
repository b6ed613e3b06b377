"""End-to-end benchmark of a package on an Android phone: push the engine's CLI (NDK build) and the
package over adb, run `mvd_engine_cli --benchmark` there, pull its pipeline-benchmark result.

The phone's own figures: the engine measures load, per-stage and per-step times and memory on the
device; the profiler only moves files, fills in what `getprop` knows about the device, and checks the
result against the contract's schema before writing it (atomically).
"""
from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import read_json
from mobile_sdk.contract.validate import validate_document
from mobile_sdk.package import MANIFEST, open_package, sha256_file

from .devices import DEVICE_DIR, Adb
from .runner import RunnerError

ENGINE_CLI = "mvd_engine_cli"


def run_engine_benchmark(device: Adb, engine_cli: Path, engine_libs: list[Path], package: Path, prompt: str,
                         seed: int, warmup: int, runs: int, threads: int | None, out: Path, log=print) -> dict:
    engine_cli, package = Path(engine_cli), Path(package)
    if not engine_cli.is_file():
        raise RunnerError(f"{engine_cli}: engine CLI not found (build it for Android with the NDK, see mobile_sdk/engine/README.md)")
    if package.is_file():  # before open_package, which would extract a whole zip only to be refused
        raise RunnerError(f"{package}: push a package folder, not a zip (unzip it first)")
    with open_package(package) as pkg:  # checked here first: a broken package is reported before any push
        files = [MANIFEST, *pkg.manifest["files"]]
    info = device.info()
    remote_pkg = f"{DEVICE_DIR}/packages/{package.name}"
    remote_manifest = f"{remote_pkg}/{MANIFEST}"
    log(f"pushing {engine_cli.name} and {len(engine_libs)} librar{'y' if len(engine_libs) == 1 else 'ies'} to {device.serial}")
    device._adb("shell", "mkdir", "-p", f"{DEVICE_DIR}/packages")
    for f in [engine_cli, *engine_libs]:
        device._adb("push", str(f), f"{DEVICE_DIR}/{Path(f).name}")
    device._adb("shell", "chmod", "755", f"{DEVICE_DIR}/{engine_cli.name}")
    there = device._adb("shell", f"sha256sum {shlex.quote(remote_manifest)} 2>/dev/null || true").split()
    if not there or there[0] != sha256_file(package / MANIFEST):  # the same package is pushed once
        log(f"pushing {package.name} ({len(files)} files)")
        device._adb("shell", "rm", "-rf", remote_pkg)
        for rel in files:
            device._adb("shell", "mkdir", "-p", str(Path(f"{remote_pkg}/{rel}").parent))
            device._adb("push", str(package / rel), f"{remote_pkg}/{rel}")
    remote_out = f"{DEVICE_DIR}/engine-benchmark.json"
    cmd = (f"cd {DEVICE_DIR} && LD_LIBRARY_PATH={DEVICE_DIR} ./{engine_cli.name} --package {shlex.quote(remote_pkg)} "
           f"--prompt {shlex.quote(prompt)} --seed {seed} --warmup {warmup} --runs {runs} "
           f"--benchmark {remote_out}" + (f" --threads {threads}" if threads else ""))
    log(f"running the end-to-end benchmark on {device.serial} ({warmup} warm-up, {runs} timed generations)")
    device._adb("shell", cmd)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "result.json"
        device._adb("pull", remote_out, str(local))
        result = read_json(local, RunnerError, "engine benchmark result")
    validate_document(result, "pipeline_benchmark", f"{device.serial}:{remote_out}", RunnerError)
    result["device"].update({k: v for k, v in info["device"].items() if k in ("model", "soc", "os") and v})
    result["device"]["serial"] = device.serial
    with atomic_file(out) as tmp_out:
        tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    return result
