"""Validation of every external document against its JSON Schema (schemas/<kind>.v<N>.schema.json).

One call for every reader: the document's kind fixes where its version is written; the version picks
the schema; the first problem becomes one error naming the file and the JSON path (header.provenance.kind,
results[0].times_ms).
"""
from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import SDKError
from . import names

# kind -> (key holding the version, version assumed when the key is absent (None: required), versions read)
KINDS: dict[str, tuple[str, int | None, tuple[int, ...]]] = {
    "manifest": ("schema_version", None, tuple(names()["package"]["reads_versions"])),
    "tokenizer": ("version", 1, tuple(names()["tokenizers"]["reads_versions"])),
    "model_index": ("format_version", None, (1,)),
    "latency_table": ("schema_version", None, (1,)),
    "plan": ("version", 1, (1,)),
    "pipeline_benchmark": ("version", None, (1,)),
    "coreml_benchmark": ("version", None, (1,)),
    "supernet": ("version", 1, (1,)),
}


@functools.cache
def schema(kind: str, version: int) -> dict:
    text = resources.files(__package__).joinpath("schemas", f"{kind.replace('_', '-')}.v{version}.schema.json").read_text()
    return json.loads(text)


@functools.cache
def _validator(kind: str, version: int):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(kind, version))


def json_path(parts) -> str:
    """`header.provenance.kind`, `results[0].times_ms`; the top level is `(top level)`."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(top level)"


def document_version(doc: Any, kind: str, path: str | Path, error: type[SDKError]) -> int:
    key, default, versions = KINDS[kind]
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object at the top level, got {type(doc).__name__}")
    version = doc.get(key, default)
    if isinstance(version, bool) or version not in versions:
        raise error(f"{path}: {key} {version!r} is not supported by this SDK (it reads {', '.join(map(str, versions))})")
    return version


def validate_document(doc: Any, kind: str, path: str | Path, error: type[SDKError] = SDKError) -> int:
    """Raise `error` naming `path` and the JSON path of the first problem; returns the document's version."""
    from jsonschema.exceptions import best_match

    version = document_version(doc, kind, path, error)
    bad = _non_finite(doc, [])
    if bad is not None:
        where, value = bad
        minimum = _subschema(schema(kind, version), where).get("minimum")
        bound = f" >= {minimum}" if minimum is not None else ""
        raise error(f"{path}: {json_path(where)}: must be a finite number{bound}, got {value}")
    problem = best_match(_validator(kind, version).iter_errors(doc))
    if problem is not None:
        raise error(f"{path}: {_describe(problem)}")
    return version


def _describe(e) -> str:
    """One readable line: the schema's own `x-message` where it has one, else by failing keyword."""
    where = json_path(e.absolute_path)
    if "x-message" in e.schema:
        return f"{where}: {e.schema['x-message']}"
    if e.validator == "required":
        missing = [k for k in e.validator_value if k not in e.instance]
        return f"{where} lacks {', '.join(missing)}"
    if e.validator in ("minimum", "exclusiveMinimum") and isinstance(e.instance, (int, float)):
        op = ">=" if e.validator == "minimum" else ">"
        return f"{where}: must be a finite number {op} {e.validator_value}, got {e.instance!r}"
    message = e.message if len(e.message) <= 200 else e.message[:200] + "..."
    return f"{where}: {message}"


def _non_finite(value: Any, where: list) -> tuple[list, float] | None:
    """The JSON path and value of the first NaN or infinity (Python's json reads them; no schema sees them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, where + [k])
        if found is not None:
            return found
    return None


def _subschema(root: dict, where: list) -> dict:
    """The schema that applies at a JSON path (following properties, additionalProperties, items, local $ref)."""
    node = _deref(root, root)
    for part in where:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part) or node.get("additionalProperties") or {}
        node = _deref(root, node if isinstance(node, dict) else {})
    return node


def _deref(root: dict, node: dict) -> dict:
    while isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target = root
        for key in node["$ref"][2:].split("/"):
            target = target[key]
        node = target
    return node
