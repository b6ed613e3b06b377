"""Where micro-benchmarks run: this host, or an Android phone over adb. Both run our C++ runner.

A device has `info()` (the table header's device/runtime fields), `prepare(programs)` and
`run(program, warmup, runs, threads, etdump)` returning the runner's JSON result.
"""
from __future__ import annotations

import platform
import shlex
import subprocess
from importlib import metadata
from pathlib import Path

from .runner import RUNNER_NAME, RunnerError, build_host_runner, parse_runner_output

DEVICE_DIR = "/data/local/tmp/mobile_sdk_profile"


class DeviceDisconnected(RunnerError):
    """The device stopped answering mid-run; finished entries are kept and the next run resumes."""


def host_cpu(cpuinfo: str | None = None) -> str:
    """The CPU model with its family/model numbers and vector ISA ("AMD EPYC" alone names several): XNNPACK
    picks its kernels by ISA, so host timings compare only between hosts that report the same.
    `cpuinfo`: /proc/cpuinfo's text (read when not given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{fields['model name']} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {isa})"


class HostDevice:
    """This machine, through the host build of the runner."""

    def __init__(self, runner: Path | None = None, log=print):
        self.runner = Path(runner) if runner else build_host_runner(log=log)

    def info(self) -> dict:
        return {"device": {"model": f"host ({platform.node()})", "soc": host_cpu(), "os": f"{platform.system()} {platform.release()}",
                           "arch": platform.machine()},
                "runtime": {"name": "executorch", "version": metadata.version("executorch"), "delegate": "XnnpackBackend"},
                "compute_unit": "cpu"}

    def prepare(self, programs: list[Path]) -> None:
        pass

    def run(self, program: Path, warmup: int, runs: int, threads: int, etdump: Path | None = None) -> dict:
        cmd = [str(self.runner), "--model", str(program), "--warmup", str(warmup), "--runs", str(runs),
               "--threads", str(threads)] + (["--etdump", str(etdump)] if etdump else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RunnerError(f"{program}: runner failed:\n{proc.stderr[-2000:]}")
        return parse_runner_output(proc.stdout, str(program))


class Adb:
    """One Android device over adb: commands, files, properties; a lost device is DeviceDisconnected."""

    def __init__(self, serial: str, adb: str = "adb"):
        self.serial, self.adb = serial, adb

    def _adb(self, *args: str, check: bool = True) -> str:
        cmd = [self.adb, "-s", self.serial, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise RunnerError(f"{self.adb!r} not found on PATH (install Debian's adb package)") from None
        except subprocess.TimeoutExpired:
            raise DeviceDisconnected(f"device {self.serial}: `{' '.join(args[:2])}` timed out") from None
        if check and proc.returncode != 0:
            text = (proc.stdout + proc.stderr).strip()
            if "not found" in text or "offline" in text or "no devices" in text or "unauthorized" in text:
                raise DeviceDisconnected(f"device {self.serial} is not available: {text[-300:]}")
            raise RunnerError(f"device {self.serial}: `adb {' '.join(args)}` failed: {text[-1000:]}")
        return proc.stdout

    def _prop(self, name: str) -> str:
        return self._adb("shell", "getprop", name).strip()

    def info(self) -> dict:
        state = self._adb("get-state").strip()
        if state != "device":
            raise DeviceDisconnected(f"device {self.serial} is {state or 'not connected'}")
        return {"device": {"model": f"{self._prop('ro.product.manufacturer')} {self._prop('ro.product.model')}".strip(),
                           "soc": self._prop("ro.soc.model") or self._prop("ro.board.platform"),
                           "os": f"Android {self._prop('ro.build.version.release')}", "serial": self.serial},
                "runtime": {"name": "executorch", "version": metadata.version("executorch"), "delegate": "XnnpackBackend"},
                "compute_unit": "cpu"}


class AdbDevice(Adb):
    """An Android device: programs and the (NDK-built) runner are pushed to DEVICE_DIR and run there."""

    def __init__(self, serial: str, runner: Path, runner_libs: list[Path] = (), adb: str = "adb"):
        super().__init__(serial, adb)
        self.runner, self.libs = Path(runner), [Path(p) for p in runner_libs]
        if not self.runner.exists():
            raise RunnerError(f"{self.runner}: runner binary not found (cross-build it for Android, see profiling/README.md)")

    def prepare(self, programs: list[Path]) -> None:
        self._adb("shell", "mkdir", "-p", f"{DEVICE_DIR}/programs")
        for f in [self.runner, *self.libs]:
            self._adb("push", str(f), f"{DEVICE_DIR}/{f.name}")
        self._adb("shell", "chmod", "755", f"{DEVICE_DIR}/{RUNNER_NAME}")
        listed = set(self._adb("shell", "ls", f"{DEVICE_DIR}/programs").split())
        for p in programs:
            if p.name not in listed:
                self._adb("push", str(p), f"{DEVICE_DIR}/programs/{p.name}")

    def run(self, program: Path, warmup: int, runs: int, threads: int, etdump: Path | None = None) -> dict:
        remote = f"{DEVICE_DIR}/programs/{program.name}"
        remote_dump = f"{DEVICE_DIR}/{program.stem}.etdp"
        cmd = (f"cd {DEVICE_DIR} && LD_LIBRARY_PATH={DEVICE_DIR} ./{RUNNER_NAME} --model {shlex.quote(remote)} "
               f"--warmup {warmup} --runs {runs} --threads {threads}" + (f" --etdump {remote_dump}" if etdump else ""))
        out = self._adb("shell", cmd)
        result = parse_runner_output(out, f"{self.serial}:{remote}")
        if etdump:
            self._adb("pull", remote_dump, str(etdump))
        return result
