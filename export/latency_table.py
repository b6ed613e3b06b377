"""Latency/memory tables: one JSON file per device x runtime x compute unit (schema 1).

`profiling/` writes them, the predictor and the search read them. Entries are keyed by an op-signature
string (`export.unet_blocks`) that encodes the block and its shapes. Every table says where its numbers
come from (`provenance.kind`): `measured` (by our harness), `published` (cited figures) or `estimated`
(a stated method); consumers repeat that label so an estimate is never shown as a measurement.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import read_json
from mobile_sdk.errors import SDKError

TABLE_FORMAT = "mobile-sdk-latency-table"
SCHEMA_VERSION = 1
PROVENANCE_KINDS = ("measured", "published", "estimated")
# What each provenance kind must say about itself.
PROVENANCE_FIELDS = {"measured": ("tool",), "published": ("source",), "estimated": ("method",)}
HEADER_FIELDS = ("device", "runtime", "compute_unit", "threads", "sdk_version", "date", "measurement",
                 "provenance", "preset", "quantize", "resolution", "status")
ENTRY_FIELDS = ("count", "mean_ms", "p10_ms", "p50_ms", "p90_ms", "peak_memory_bytes", "weight_bytes")


class TableError(SDKError):
    """A latency table is malformed, or lacks entries a plan needs."""


@dataclass(frozen=True)
class TableEntry:
    count: int  # timed runs behind the statistics
    mean_ms: float  # the header's `measurement.statistic` (a trimmed mean for measured tables)
    p10_ms: float
    p50_ms: float
    p90_ms: float
    peak_memory_bytes: int  # peak resident memory of running this block alone (weights included)
    weight_bytes: int  # bytes of the block's weights in the program


@dataclass
class LatencyTable:
    header: dict[str, Any]
    entries: dict[str, TableEntry] = field(default_factory=dict)

    @property
    def provenance(self) -> dict[str, Any]:
        return self.header["provenance"]

    def describe(self) -> str:
        """One line naming the device, runtime and provenance, for search reports and logs."""
        h, p = self.header, self.provenance
        how = p.get("tool") or p.get("source") or p.get("method")
        return (f"{h['device'].get('model', '?')} / {h['runtime'].get('name', '?')} {h['runtime'].get('version', '')}"
                f" / {h['compute_unit']}: {p['kind'].upper()} ({how})")

    def require(self, signatures: Iterable[str], source: str = "table") -> None:
        missing = sorted(set(signatures) - set(self.entries))
        if missing:
            shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
            raise TableError(f"{source}: the table has no entry for {len(missing)} signature(s) this model needs "
                             f"(profile the preset/resolution again):\n  {shown}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "schema_version": SCHEMA_VERSION, "header": self.header,
                "entries": {k: asdict(v) for k, v in sorted(self.entries.items())}}


def save_table(table: LatencyTable, path: str | Path) -> Path:
    path = Path(path)
    validate_table_dict(table.to_dict(), str(path))
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
    return path


def load_table(path: str | Path) -> LatencyTable:
    return table_from_dict(read_json(path, TableError, "latency table"), str(path))


def table_from_dict(data: Any, where: str) -> LatencyTable:
    validate_table_dict(data, where)
    entries = {sig: TableEntry(**{k: e[k] for k in ENTRY_FIELDS}) for sig, e in data["entries"].items()}
    return LatencyTable(header=data["header"], entries=entries)


def validate_table_dict(data: Any, where: str) -> None:
    """Schema and value checks; every problem names the file and the field."""
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise TableError(f"{where}: not a latency table (expected \"format\": \"{TABLE_FORMAT}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise TableError(f"{where}: unsupported schema_version {data.get('schema_version')!r}; this SDK reads {SCHEMA_VERSION}")
    header, entries = data.get("header"), data.get("entries")
    if not isinstance(header, dict):
        raise TableError(f"{where}: missing \"header\" object")
    missing = [k for k in HEADER_FIELDS if k not in header]
    if missing:
        raise TableError(f"{where}: header lacks {', '.join(missing)}")
    prov = header["provenance"]
    if not isinstance(prov, dict) or prov.get("kind") not in PROVENANCE_KINDS:
        raise TableError(f"{where}: header.provenance.kind must be one of {', '.join(PROVENANCE_KINDS)}")
    for k in PROVENANCE_FIELDS[prov["kind"]]:
        if not prov.get(k):
            raise TableError(f"{where}: a {prov['kind']} table must say its {k} in header.provenance.{k}")
    if header["status"] not in ("complete", "partial"):
        raise TableError(f"{where}: header.status must be \"complete\" or \"partial\"")
    cal = header.get("calibration")
    if cal is not None:
        scale = cal.get("unet_call_scale") if isinstance(cal, dict) else None
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise TableError(f"{where}: header.calibration.unet_call_scale must be a finite number > 0")
    if not isinstance(entries, dict):
        raise TableError(f"{where}: missing \"entries\" object")
    for sig, e in entries.items():
        if not isinstance(e, dict):
            raise TableError(f"{where}: entry {sig!r} is not an object")
        lacking = [k for k in ENTRY_FIELDS if k not in e]
        if lacking:
            raise TableError(f"{where}: entry {sig!r} lacks {', '.join(lacking)}")
        for k in ENTRY_FIELDS:
            v = e[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise TableError(f"{where}: entry {sig!r}: {k} must be a finite number >= 0, got {v!r}")
        if e["count"] < 1:
            raise TableError(f"{where}: entry {sig!r}: count must be >= 1")
        if not e["p10_ms"] <= e["p50_ms"] <= e["p90_ms"]:
            raise TableError(f"{where}: entry {sig!r}: percentiles out of order (p10 <= p50 <= p90)")
