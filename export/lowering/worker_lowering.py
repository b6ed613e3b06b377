"""Lower components in worker processes (`export.lowering.component_worker`), one at a time.

The exporting process saves each component's torch.export programs and then either lowers them one at a
time after it has released its own weights (the least memory), or, when the machine has the memory for a
worker beside it, starts the largest component's worker at once, in the background, while it computes the
eager test vectors (minutes at 0.6B, on the core the single-threaded lowering leaves idle), and once those
are done and its weights released, lowers the other components on that core, beside the first.
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
# A worker's peak of memory the kernel cannot drop, over its component's saved programs: the 0.6B UNet's
# worker holds 2.82 GB of it for a 2.42 GB .pt2 (XNNPACK's serialized copy of the weights and the graph passes'
# own memory); the weights themselves are mapped from a file (`component_worker.file_backed_weights`), and
# before that and `preprocess_shares_weights` it held 7.7 GB.
WORKER_PEAK_PER_PROGRAM_BYTE = 1.25
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


def _program_bytes(methods: dict[str, str]) -> int:
    return sum(Path(p).stat().st_size for p in methods.values())


def overlap_fits(programs: dict[str, dict[str, str]], available: int | None) -> bool:
    """Whether a worker lowering the largest component fits beside the exporting process."""
    largest = max(_program_bytes(paths) for paths in programs.values())
    return available is not None and available >= WORKER_PEAK_PER_PROGRAM_BYTE * largest + OVERLAP_HEADROOM_BYTES


def overlap_reason(programs: dict[str, dict[str, str]], overlap: bool | None) -> str | None:
    """Why the workers start beside the test vectors (`--overlap`, or the memory available), or None: they wait
    until the weights here are released. `overlap` None decides by the memory."""
    if overlap is not None:
        return "--overlap" if overlap else None
    available = available_memory_bytes()
    return f"{available / 1e9:.1f} GB available" if overlap_fits(programs, available) else None


class WorkerLowering:
    """Lowers each component of `programs` ({component: {method: .pt2 path}}) in a worker of its own, the
    largest first: `run()` here and now, one at a time, or `start()` in a background lane and, once this
    process has freed a core and its weights, `add_lane()` for a second worker beside the first; then
    `wait()` for the delegation reports (`check()` meanwhile raises a failed worker's error at once).
    `cancel()` terminates running workers: call it when the export fails."""

    def __init__(self, root: Path, programs: dict[str, dict[str, str]], quantize: dict[str, str],
                 log: Callable[[str], None]):
        self.root, self.programs, self.quantize, self.log = root, programs, quantize, log
        self.reports: dict[str, dict] = {}
        self._queue = sorted(programs, key=lambda c: _program_bytes(programs[c]), reverse=True)
        self._errors: list[BaseException] = []
        self._lanes: list[threading.Thread] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._cancelled = threading.Event()
        self._lock = threading.Lock()  # guards the queue, and a worker starts either before cancel() or not at all

    @property
    def started(self) -> bool:
        return bool(self._lanes)

    @property
    def finished(self) -> bool:
        """Every component lowered (or failed): no queue, no lane running."""
        with self._lock:
            return not self._queue and not any(lane.is_alive() for lane in self._lanes)

    def run(self) -> dict[str, dict]:
        while (comp := self._next()) is not None:
            self.reports[comp] = self._lower(comp, self.programs[comp])
        return self.reports

    def _next(self) -> str | None:
        with self._lock:
            return self._queue.pop(0) if self._queue and not self._errors else None

    def start(self) -> None:
        self.add_lane()

    def add_lane(self) -> None:
        """One more background lane taking components from the queue (none if the queue is empty)."""
        if not self._queue:
            return

        def body():
            try:
                self.run()
            except BaseException as e:  # re-raised in the exporting thread by wait()
                with self._lock:
                    self._errors.append(e)

        lane = threading.Thread(target=body, name=f"worker-lowering-{len(self._lanes)}", daemon=True)
        self._lanes.append(lane)
        lane.start()

    def check(self) -> None:
        """Raises a background worker's error now: the exporting process calls it between its own steps, so a
        failed worker stops the export within one eager call instead of after all the test vectors."""
        with self._lock:
            if self._errors:
                raise self._errors[0]

    def wait(self) -> dict[str, dict]:
        for lane in self._lanes:
            lane.join()
        if self._errors:
            raise self._errors[0]
        return self.reports

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.terminate()
        for lane in self._lanes:
            lane.join()

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
                proc = self._procs[comp] = subprocess.Popen(
                    [sys.executable, "-m", "export.lowering.component_worker", str(job_path)],
                    stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            for line in proc.stdout:
                self.log(f"  [{comp}] {line.strip()}")  # two lanes may interleave
            code = proc.wait()
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
    lowering is single-threaded, and a core shared by both slows the eager calls more than one thread less.
    Yields `between()`, for the exporting process to call between its eager steps: it raises a failed
    worker's error (`WorkerLowering.check`) and gives the thread back once every worker has finished."""
    before = torch.get_num_threads()
    if workers is not None and workers.started:
        torch.set_num_threads(max(1, before - 1))

    def between() -> None:
        if workers is not None:
            workers.check()
            if workers.finished:
                torch.set_num_threads(before)

    try:
        yield between
    finally:
        torch.set_num_threads(before)
