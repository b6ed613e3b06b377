"""Measure a model's table entries on a device and write a `measured` latency table.

Resumable: entries are measured in interleaved rounds (runner.measure_interleaved); every runner result
is kept in WORK/TABLE.rounds.json (one per table, so several devices can share one WORK folder of
programs) and an entry enters the table (rewritten atomically, status "partial") once it has all its
rounds. A rerun with the same settings keeps both, so an interrupted run or a phone that disconnects
loses at most the runner process in flight.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from tqdm import tqdm

from export.nas.latency_table import LatencyTable, TableEntry, TableError, load_table, save_table
from export.nas.model_blocks import ElasticBlocks, ModelBlocks
from export.lowering.package_writer import tool_versions
from mobile_sdk import __version__
from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import ModelConfig, read_json

from .microbench import MicroProgram, build_program, program_filename
from .runner import TRIM_FRACTION, measure_interleaved, summarize

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


def profile(blocks: ModelBlocks | ElasticBlocks, device, out: str | Path, *, preset: str, quantize: str = "none",
            threads: int | None = None, warmup: int = 5, runs: int = 20, rounds: int = 5, work_dir: str | Path | None = None,
            etdump_dir: str | Path | None = None, tool: str = "mobile-sdk profile", log=print,
            progress: bool = True) -> LatencyTable:
    out = Path(out)
    threads = threads or os.cpu_count() or 1
    work = Path(work_dir) if work_dir else out.with_name(out.stem + ".programs")
    work.mkdir(parents=True, exist_ok=True)
    header = table_header(device.info(), preset, blocks.config, quantize, threads, warmup, runs, rounds, tool)
    if isinstance(blocks, ElasticBlocks):  # which sub-networks and sizes: `search --space` reads them here
        header["elastic"] = blocks.header()
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
    # Runner results of unfinished entries survive an interruption here (entries need every round).
    state_path = work / f"{out.stem}.rounds.json"
    settings = {"device": header["device"].get("model"), "threads": threads, "warmup": warmup, "runs": runs}
    state = read_json(state_path, TableError, "measurement state") if state_path.exists() else {}
    kept = state.get("results", {}) if state.get("settings") == settings else {}
    done = {sig: results[:rounds] for sig, results in kept.items() if sig in programs}
    dumps = {}
    if etdump_dir:
        Path(etdump_dir).mkdir(parents=True, exist_ok=True)
        dumps = {sig: Path(etdump_dir) / program_filename(sig, ".etdp") for sig in programs}

    def record(sig: str, results: list[dict]) -> None:
        done[sig] = results
        if len(results) == rounds:
            peak = max(max(0, r["rss_bytes_peak"] - r["rss_bytes_start"]) for r in results)
            table.entries[sig] = TableEntry(**summarize([r["times_ms"] for r in results]), peak_memory_bytes=peak,
                                            weight_bytes=programs[sig].weight_bytes)
            save_table(table, out)
        with atomic_file(state_path) as tmp:
            tmp.write_text(json.dumps({"settings": settings, "results": done}))

    for sig, results in list(done.items()):
        if len(results) == rounds:  # measured before the table could be written
            record(sig, results)
    measure_interleaved(device, {sig: p.path for sig, p in programs.items()}, warmup, runs, threads, rounds, done,
                        record, dumps, progress)
    table.header["status"] = "complete"
    save_table(table, out)
    return table
