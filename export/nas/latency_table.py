"""Latency/memory tables: one JSON file per device x runtime x compute unit (schema 1: mobile_sdk/contract/schemas/latency-table.v1.schema.json).

`profiling/` writes them, the predictor and the search read them. Entries are keyed by an op-signature
string (`export.unet_blocks`) that encodes the block and its shapes. Every table says where its numbers
come from (`provenance.kind`): `measured` (by our harness), `published` (cited figures) or `estimated`
(a stated method); consumers repeat that label so an estimate is never shown as a measurement.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import read_json
from mobile_sdk.contract.validate import validate_document
from mobile_sdk.errors import SDKError

TABLE_FORMAT = "mobile-sdk-latency-table"
SCHEMA_VERSION = 1
PROVENANCE_KINDS = ("measured", "published", "estimated")  # what each must say about itself: the schema
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
    """The schema (contract/schemas/latency-table.v1), then what a schema cannot say; errors name file and field."""
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise TableError(f"{where}: not a latency table (expected \"format\": \"{TABLE_FORMAT}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise TableError(f"{where}: unsupported schema_version {data.get('schema_version')!r}; this SDK reads {SCHEMA_VERSION}")
    validate_document(data, "latency_table", where, TableError)
    for sig, e in data["entries"].items():
        if not e["p10_ms"] <= e["p50_ms"] <= e["p90_ms"]:
            raise TableError(f"{where}: $.entries[{sig!r}]: percentiles out of order (p10 <= p50 <= p90)")
