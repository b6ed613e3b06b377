"""Several phones at once (`profile android --serial A --serial B ...`): one table per phone.

The micro-programs are lowered once, before any phone starts, into one folder the phones share. Then
each phone is measured by the ordinary harness in its own thread (a thread mostly waits for adb, so
the GIL is no bottleneck), with its own table and measurement state: each resumes on its own, and a
phone that disconnects or fails ends only its own thread, never the others'.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from export.nas.latency_table import LatencyTable
from export.nas.model_blocks import ModelBlocks
from mobile_sdk.errors import SDKError

from .harness import profile
from .microbench import build_program

SERIAL_FIELD = "{serial}"


def tables_per_serial(out: str, serials: list[str]) -> dict[str, Path]:
    """--out for each serial: `{serial}` in it is replaced; with several serials it is required."""
    if len(serials) > 1 and SERIAL_FIELD not in out:
        raise SDKError(f"--out {out}: with several --serial it must contain {SERIAL_FIELD}, "
                       f"e.g. tables/phone-{SERIAL_FIELD}.json (one table per phone)")
    if len(set(serials)) != len(serials):
        raise SDKError(f"--serial: {', '.join(s for s in dict.fromkeys(serials) if serials.count(s) > 1)} given twice")
    return {s: Path(out.replace(SERIAL_FIELD, s)) for s in serials}


def shared_programs_dir(out: str) -> Path:
    """The phones' shared micro-programs, beside the tables: `phone-{serial}.json` -> `phone-all.programs/`
    (`TABLE.programs/` for a --out without {serial}, as `profile host` has it)."""
    path = Path(out.replace(SERIAL_FIELD, "all"))
    return path.with_name(path.stem + ".programs")


def profile_devices(blocks: ModelBlocks, devices: dict, outs: dict[str, Path], work_dir: Path, *,
                    quantize: str = "none", tool: str = "mobile-sdk profile android (serial {serial})", log=print,
                    progress: bool = True, **settings) -> tuple[dict[str, LatencyTable], dict[str, SDKError]]:
    """(complete tables, errors) by serial; each table's ETDumps go to TABLE.etdump/. `settings` are
    profile()'s (threads, warmup, runs, rounds)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for sig in tqdm(blocks.signatures(), desc="lowering micro-benchmarks", disable=not progress):
        build_program(blocks.blocks[sig], work_dir, quantize)

    def measure(serial: str) -> LatencyTable:
        out = outs[serial]
        return profile(blocks, devices[serial], out, quantize=quantize, work_dir=work_dir,
                       etdump_dir=out.with_name(out.stem + ".etdump"), tool=tool.format(serial=serial), progress=False,
                       log=lambda line: log(f"[{serial}] {line}"), **settings)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        futures = {serial: pool.submit(measure, serial) for serial in devices}
    tables, errors = {}, {}
    for serial, future in futures.items():
        try:
            tables[serial] = future.result()
        except SDKError as e:  # a lost phone, a failing runner, a table with other settings: this phone only
            errors[serial] = e
    return tables, errors
