"""Measure a model's table entries on a device and write a `measured` latency table.

Resumable: the table is rewritten (atomically, status "partial") after every entry, and a rerun with
the same settings skips the entries it already has, so an interrupted run or a phone that disconnects
loses at most the entry in flight.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

from tqdm import tqdm

from export.latency_table import LatencyTable, TableEntry, TableError, load_table, save_table
from export.model_blocks import ModelBlocks
from export.package_writer import tool_versions
from mobile_sdk import __version__
from mobile_sdk.config import ModelConfig

from .microbench import MicroProgram, build_program
from .runner import TRIM_FRACTION, measure

# Header fields that must match for a rerun to continue an existing table.
RESUME_KEYS = ("preset", "quantize", "resolution", "threads", "compute_unit")


def table_header(info: dict, preset: str, cfg: ModelConfig, quantize: str, threads: int, warmup: int, runs: int,
                 rounds: int, tool: str) -> dict:
    return {
        **info, "threads": threads, "sdk_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "measurement": {"warmup": warmup, "runs": runs, "rounds": rounds,
                        "statistic": f"median over {rounds} runner processes of each one's mean after trimming "
                                     f"{TRIM_FRACTION:.0%} of runs at each end; p10/p50/p90 of all runs",
                        "timer": "steady_clock around Module::execute (et_bench_runner)",
                        "memory": "resident set growth of the runner process from before loading to its most after any run (weights included)"},
        "provenance": {"kind": "measured", "tool": tool, "tool_versions": tool_versions()},
        "preset": preset, "quantize": quantize,
        "resolution": {"height": cfg.height, "width": cfg.width, "num_frames": cfg.num_frames},
        "status": "partial",
    }


def _resume(out: Path, header: dict) -> LatencyTable:
    if not out.exists():
        return LatencyTable(header=header)
    old = load_table(out)
    differs = [k for k in RESUME_KEYS if old.header.get(k) != header.get(k)]
    differs += [k for k in ("warmup", "runs", "rounds") if old.header["measurement"].get(k) != header["measurement"][k]]
    if old.header["device"].get("model") != header["device"].get("model"):
        differs.append("device")
    if differs:
        raise TableError(f"{out}: an existing table was measured with different {', '.join(differs)}; "
                         f"choose another --out or remove it")
    old.header.update({k: v for k, v in header.items() if k != "status"})
    return old


def profile(blocks: ModelBlocks, device, out: str | Path, *, preset: str, quantize: str = "none",
            threads: int | None = None, warmup: int = 5, runs: int = 20, rounds: int = 5, work_dir: str | Path | None = None,
            etdump_dir: str | Path | None = None, tool: str = "mobile-sdk profile", log=print,
            progress: bool = True) -> LatencyTable:
    out = Path(out)
    threads = threads or os.cpu_count() or 1
    work = Path(work_dir) if work_dir else out.with_name(out.stem + ".programs")
    work.mkdir(parents=True, exist_ok=True)
    header = table_header(device.info(), preset, blocks.config, quantize, threads, warmup, runs, rounds, tool)
    table = _resume(out, header)
    todo = [s for s in blocks.signatures() if s not in table.entries]
    if not todo:
        log(f"{out}: all {len(table.entries)} entries already measured")
    else:
        log(f"{out}: {len(table.entries)} entries done, {len(todo)} to measure on {header['device']['model']}")
    programs: dict[str, MicroProgram] = {}
    for sig in tqdm(todo, desc="lowering micro-benchmarks", disable=not progress):
        programs[sig] = build_program(blocks.blocks[sig], work, quantize)
    device.prepare([p.path for p in programs.values()])
    for sig in tqdm(todo, desc="measuring", disable=not progress):
        prog = programs[sig]
        dump = Path(etdump_dir) / (prog.path.stem + ".etdp") if etdump_dir else None
        if dump:
            dump.parent.mkdir(parents=True, exist_ok=True)
        stats, results = measure(device, prog.path, warmup, runs, threads, rounds, dump)
        peak = max(max(0, r["rss_bytes_peak"] - r["rss_bytes_start"]) for r in results)
        table.entries[sig] = TableEntry(**stats, peak_memory_bytes=peak, weight_bytes=prog.weight_bytes)
        save_table(table, out)
    table.header["status"] = "complete"
    save_table(table, out)
    return table
