"""The contract's fixed names as source code for the C++ engine, the Kotlin app and the Swift package,
generated from names.json so no language keeps its own copy. `python -m mobile_sdk.contract.codegen`
rewrites the files; a test fails when a committed one differs from what names.json gives.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import names

REPO = Path(__file__).resolve().parents[2]
HEADER = "Generated from mobile_sdk/contract/names.json by mobile_sdk/contract/codegen.py; do not edit."
OUTPUTS = {
    "cpp": REPO / "mobile_sdk/engine/include/mvd/contract_names.h",
    "kotlin": REPO / "android_demo/app/src/main/java/com/mobilesdk/demo/ContractNames.kt",
    "swift": REPO / "ios_demo/MobileVideoDiffusion/Sources/MobileVideoDiffusion/ContractNames.swift",
}


def constants() -> list[tuple[str, object]]:
    """(name, value) pairs in a fixed order; values are str, int, or lists of str or of int."""
    n = names()
    pkg, entries = n["package"], n["entry_names"]
    out: list[tuple[str, object]] = [
        ("PACKAGE_SCHEMA", pkg["schema"]),
        ("PACKAGE_SCHEMA_VERSION", pkg["schema_version"]),
        ("PACKAGE_READS_VERSIONS", list(pkg["reads_versions"])),
        ("PACKAGE_SUFFIX", pkg["suffix"]),
        ("MANIFEST_FILE", pkg["manifest"]),
        ("TOKENIZER_FILE", pkg["tokenizer"]),
        ("TEST_VECTOR_DIR", pkg["test_vector_dir"]),
        *((f"TOKENIZER_{t.upper()}", t) for t in n["tokenizers"]["types"]),
        ("TOKENIZER_READS_VERSIONS", n["tokenizers"]["reads_versions"]),
        ("SCHEDULER_TYPE", n["scheduler"]["type"]),
        ("COMPONENTS", n["components"]),
        ("ENTRY_SINGLE", entries["single"]),
        ("ENTRY_PER_PLAN", entries["per_plan"]),
        ("ENTRY_SIZE_SUFFIX", entries["size_suffix"]),
        ("NOISE_GENERATOR", n["noise"]["generator"]),
        ("NOISE_TEST_VECTOR", n["noise"]["test_vector"]),
        ("PIPELINE_TEST_VECTOR", n["test_vectors"]["pipeline"]),
        ("PIPELINE_BENCHMARK_FORMAT", n["results"]["pipeline_benchmark"]),
        ("COREML_BENCHMARK_FORMAT", n["results"]["coreml_benchmark"]),
    ]
    for target, spec in n["targets"].items():
        out += [(f"{target.upper()}_TARGET", target), (f"{target.upper()}_DIR", spec["dir"]),
                (f"{target.upper()}_SUFFIX", spec["suffix"])]
    for comp, io in n["io"].items():
        out += [(f"{comp.upper()}_INPUTS", io["inputs"]), (f"{comp.upper()}_OUTPUTS", io["outputs"])]
    out.append(("METRICS", n["results"]["metrics"]))
    return out


def _camel(name: str) -> str:
    head, *rest = name.lower().split("_")
    return head + "".join(w.capitalize() for w in rest)


# per language: file head and tail, how a constant's name is spelled, and a template per kind of value
LANGUAGES = {
    "cpp": {"head": [f"// {HEADER}", "#pragma once", "", "#include <array>", "#include <cstdint>", "",
                     "namespace mvd::contract {", ""],
            "tail": ["", "}  // namespace mvd::contract", ""], "name": str, "types": ("const char*", "int"),
            "str": "inline constexpr const char* {n} = {v};", "int": "inline constexpr int {n} = {v};",
            "list": "inline constexpr std::array<{t}, {k}> {n} = {{{items}}};"},
    "kotlin": {"head": [f"// {HEADER}", "package com.mobilesdk.demo", "", "object ContractNames {"],
               "tail": ["}", ""], "name": str, "types": ("String", "Int"),
               "str": "    const val {n}: String = {v}", "int": "    const val {n}: Int = {v}",
               "list": "    val {n}: List<{t}> = listOf({items})"},
    "swift": {"head": [f"// {HEADER}", "", "public enum ContractNames {"],
              "tail": ["}", ""], "name": _camel, "types": ("String", "Int"),
              "str": "    public static let {n}: String = {v}", "int": "    public static let {n}: Int = {v}",
              "list": "    public static let {n}: [{t}] = [{items}]"},
}


def render(language: str) -> str:
    lang = LANGUAGES[language]
    lines = list(lang["head"])
    for name, v in constants():
        n = lang["name"](name)
        if isinstance(v, list):
            t = lang["types"][1] if all(isinstance(x, int) for x in v) else lang["types"][0]
            lines.append(lang["list"].format(n=n, t=t, k=len(v), items=", ".join(json.dumps(x) for x in v)))
        else:
            lines.append(lang["int" if isinstance(v, int) else "str"].format(n=n, v=json.dumps(v)))
    return "\n".join(lines + lang["tail"])


def stale() -> list[Path]:
    """Generated files that are missing or differ from names.json."""
    return [p for lang, p in OUTPUTS.items() if not p.is_file() or p.read_text() != render(lang)]


def main() -> int:
    for lang, path in OUTPUTS.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(lang))
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
