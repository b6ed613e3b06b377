"""Benchmark results from Core ML (the iOS demo app, or `profile coreml` on a Mac) -> a measured table.

Results format (`mobile-sdk-coreml-benchmark`, version 1), written by the app's benchmark screen:

    {"format": "mobile-sdk-coreml-benchmark", "version": 1,
     "tool": "ios-demo 0.1.0",                      # who measured
     "device": {"model": "iPhone 16 Pro Max", "machine": "iPhone17,2", "soc": "Apple A18 Pro", "os": "iOS 18.2"},
     "runtime": {"name": "coreml", "version": "iOS 18.2"},
     "compute_units": "cpuAndNeuralEngine",          # MLComputeUnits case name
     "date": "2026-11-23T10:00:00Z",
     "preset": "small", "quantize": "none", "resolution": {"height": 64, "width": 64, "num_frames": 8},
     "warmup": 5,
     "results": [{"signature": "...", "times_ms": [..], "peak_memory_bytes": 0, "weight_bytes": 0}, ...]}

The app benchmarks the micro-models of `mobile-sdk profile coreml-programs` (their index.json maps
file names to signatures), so signatures match the predictor's.
"""
from __future__ import annotations

import datetime
from pathlib import Path

from export.nas.latency_table import LatencyTable, TableEntry, TableError
from mobile_sdk import __version__
from mobile_sdk.config import read_json
from mobile_sdk.contract.validate import validate_document

from .runner import TRIM_FRACTION, summarize

RESULTS_FORMAT = "mobile-sdk-coreml-benchmark"
RESULTS_VERSION = 1  # schema: mobile_sdk/contract/schemas/coreml-benchmark.v1.schema.json


def ingest_results(path: str | Path) -> LatencyTable:
    path = Path(path)
    data = read_json(path, TableError, "benchmark results file")
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise TableError(f"{path}: not a Core ML benchmark result (expected \"format\": \"{RESULTS_FORMAT}\")")
    validate_document(data, "coreml_benchmark", path, TableError)
    entries = {}
    for r in data["results"]:
        sig, times = r["signature"], r["times_ms"]
        if sig in entries:
            raise TableError(f"{path}: signature {sig!r} appears twice")
        entries[sig] = TableEntry(**summarize([times]), peak_memory_bytes=int(r.get("peak_memory_bytes", 0)),
                                  weight_bytes=int(r.get("weight_bytes", 0)))
    runs = max(e.count for e in entries.values()) if entries else 0
    header = {
        "device": data["device"], "runtime": data["runtime"], "compute_unit": data["compute_units"], "threads": 0,
        "sdk_version": __version__, "date": data["date"],
        "measurement": {"warmup": data["warmup"], "runs": runs,
                        "statistic": f"mean after trimming {TRIM_FRACTION:.0%} of runs at each end; p10/p50/p90 of all runs",
                        "timer": "MLModel.prediction wall time"},
        "provenance": {"kind": "measured", "tool": f"{data['tool']} (ingested by mobile-sdk profile ingest "
                                                   f"{__version__} on {datetime.date.today().isoformat()})",
                       "results_file": path.name},
        "preset": data["preset"], "quantize": data["quantize"], "resolution": data["resolution"], "status": "complete",
    }
    return LatencyTable(header=header, entries=entries)
