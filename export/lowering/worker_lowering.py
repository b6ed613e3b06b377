"""Lower components in worker processes (`export.lowering.component_worker`), one at a time.

The exporting process saves each component's torch.export programs and then either lowers them after it
has released its own weights (the least memory), or, when the machine has the memory for a worker beside
it, starts the workers at once, in the background, while it computes the eager test vectors (minutes at
0.6B, on the cores the single-threaded lowering leaves idle).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import torch

from mobile_sdk.errors import SDKError
from mobile_sdk.package import component_path

SCRATCH = ".scratch"  # inside the package's temporary folder: .pt2 programs waiting for a worker
# A worker's peak RSS over its component's saved programs: the 0.6B UNet worker peaked at 7.7 GB for 2.32 GB
# of weights (the weights, XNNPACK's serialized copy of them and the graph passes' own memory).
WORKER_PEAK_PER_PROGRAM_BYTE = 3.5
# What the exporting process may grow by while it computes the test vectors beside a worker (activations
# of the eager 0.6B UNet calls and decoded frames: 4.4 GB peak against 2.9 GB of weights).
OVERLAP_HEADROOM_BYTES = 2 << 30


def save_exported(root: Path, comp: str, exported: dict) -> dict[str, str]:
    """Each method's ExportedProgram as a .pt2 in the scratch folder, for a worker to lower."""
    (root / SCRATCH).mkdir(exist_ok=True)
    paths = {}
    for name, ep in exported.items():
        paths[name] = str(root / SCRATCH / f"{comp}.{name}.pt2")
        torch.export.save(ep, paths[name])
    return paths


def available_memory_bytes() -> int | None:
    """Memory the kernel could give a new process without swapping (Linux's MemAvailable); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def overlap_fits(programs: dict[str, dict[str, str]], available: int | None) -> bool:
    """Whether a worker lowering the largest component fits beside the exporting process."""
    largest = max(sum(Path(p).stat().st_size for p in paths.values()) for paths in programs.values())
    return available is not None and available >= WORKER_PEAK_PER_PROGRAM_BYTE * largest + OVERLAP_HEADROOM_BYTES


class WorkerLowering:
    """Lowers each component of `programs` ({component: {method: .pt2 path}}) in a worker of its own, in
    turn: `run()` here and now, or `start()` in a background thread, then `wait()` for the delegation
    reports. `cancel()` stops a started one (its worker is terminated): call it when the export fails."""

    def __init__(self, root: Path, programs: dict[str, dict[str, str]], quantize: dict[str, str],
                 log: Callable[[str], None]):
        self.root, self.programs, self.quantize, self.log = root, programs, quantize, log
        self.reports: dict[str, dict] = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()  # a worker starts either before cancel() (which stops it) or not at all

    @property
    def started(self) -> bool:
        return self._thread is not None

    def run(self) -> dict[str, dict]:
        for comp, methods in self.programs.items():
            self.reports[comp] = self._lower(comp, methods)
        return self.reports

    def start(self) -> None:
        def body():
            try:
                self.run()
            except BaseException as e:  # re-raised in the exporting thread by wait()
                self._error = e

        self._thread = threading.Thread(target=body, name="worker-lowering", daemon=True)
        self._thread.start()

    def wait(self) -> dict[str, dict]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.reports

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
        if self._thread is not None:
            self._thread.join()

    def _lower(self, comp: str, methods: dict[str, str]) -> dict:
        """One worker; its progress lines become ours, its stderr goes to a file (a pipe could fill and stall it)."""
        from mobile_sdk import quiet

        scratch = self.root / SCRATCH
        self.log(f"lowering {comp} ({', '.join(methods)}) to ExecuTorch/XNNPACK in a worker process, "
                 f"quantization {self.quantize[comp]}")
        job = {"programs": methods, "out": str(self.root / component_path("executorch", comp)),
               "report": str(scratch / f"{comp}.delegation.json"), "quantize": self.quantize[comp],
               "quiet": quiet.is_quiet()}
        job_path = scratch / f"{comp}.job.json"
        job_path.write_text(json.dumps(job))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                         os.environ.get("PYTHONPATH")]))}
        with open(scratch / f"{comp}.stderr", "w+") as err:
            with self._lock:
                if self._cancelled.is_set():
                    raise SDKError(f"lowering {comp} was cancelled")
                self._proc = subprocess.Popen([sys.executable, "-m", "export.lowering.component_worker", str(job_path)],
                                              stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            for line in self._proc.stdout:
                self.log(line.rstrip("\n"))
            code = self._proc.wait()
            err.seek(0)
            lines = err.read().strip().splitlines()
        if self._cancelled.is_set():
            raise SDKError(f"lowering {comp} was cancelled")
        if code != 0:
            raise SDKError(f"lowering {comp} failed in its worker process: {lines[-1] if lines else f'exit status {code}'}")
        return json.loads(Path(job["report"]).read_text())


@contextlib.contextmanager
def leave_a_core(workers: WorkerLowering | None):
    """While started workers run, this process's torch uses one thread fewer (at least one): the worker's
    lowering is single-threaded, and a core shared by both slows the eager calls more than one thread less."""
    before = torch.get_num_threads()
    if workers is not None and workers.started:
        torch.set_num_threads(max(1, before - 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lower_in_worker(root: Path, comp: str, methods: dict[str, str], quantize: str, log: Callable[[str], None]) -> dict:
    """One component's delegation report, lowered in a worker now."""
    return WorkerLowering(root, {comp: methods}, {comp: quantize}, log).run()[comp]
