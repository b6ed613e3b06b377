"""Static checks of the Android demo app (android_demo/), which cannot be built here (no Android SDK, NDK or
Maven): every Kotlin file parses, the JNI interface is exactly the one the engine's bridge implements, package
file names come from the generated ContractNames, and the results fields the app reads are in the
pipeline-benchmark schema. Seconds, no Android tooling.
"""
from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import tree_sitter as ts
import tree_sitter_kotlin

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo"
SRC = APP / "app/src/main/java/com/mobilesdk/demo"
NATIVE_ENGINE = SRC / "engine/NativeEngine.kt"
CONTRACT_NAMES_KT = SRC / "ContractNames.kt"
JAVA_HARNESS = REPO / "tests/jni_harness/com/mobilesdk/demo/engine/NativeEngine.java"
NAMES = json.loads((REPO / "mobile_sdk/contract/names.json").read_text())
BENCHMARK_SCHEMA = json.loads((REPO / "mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json").read_text())

# The JNI interface the C++ bridge (android_demo/app/src/main/cpp) implements: name -> (parameter types, return type).
EXPECTED_EXTERNALS = {
    "open": (["String", "Boolean", "Int", "Int", "Int", "Int"], "Long"),
    "close": (["Long"], "Unit"),
    "videoInfo": (["Long"], "String"),
    "generate": (["Long", "String", "Long", "ProgressListener?"], "ByteArray"),
    "cancel": (["Long"], "Unit"),
    "lastTimings": (["Long"], "String"),
    "benchmark": (["Long", "String", "Long", "Int", "Int"], "String"),
}
KOTLIN_TO_JAVA = {"String": "String", "Boolean": "boolean", "Int": "int", "Long": "long", "ByteArray": "byte[]",
                  "Unit": "void", "ProgressListener?": "ProgressListener"}
JSON_ACCESSORS = {"get", "getString", "getInt", "getLong", "getDouble", "getBoolean", "getJSONObject", "getJSONArray",
                  "opt", "optString", "optInt", "optLong", "optDouble", "optBoolean", "optJSONObject", "optJSONArray",
                  "has", "isNull", "put", "remove"}

_parser = ts.Parser(ts.Language(tree_sitter_kotlin.language()))


def parse(path: Path):
    return _parser.parse(path.read_bytes()).root_node


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def text(node) -> str:
    return node.text.decode()


def kotlin_files(suffixes=(".kt", ".kts")) -> list[Path]:
    return sorted(p for p in APP.rglob("*") if p.suffix in suffixes and "build" not in p.relative_to(APP).parts)


def string_literals(root) -> list:
    return [n for n in walk(root) if n.type in ("string_literal", "multiline_string_literal")]


def literal_value(node) -> str:
    """The literal's text without its quotes (templates are left as written)."""
    return text(node).strip('"')


def test_every_kotlin_file_parses():
    files = kotlin_files()
    rel = {str(p.relative_to(APP)) for p in files}
    for needed in ("settings.gradle.kts", "build.gradle.kts", "app/build.gradle.kts",
                   "app/src/main/java/com/mobilesdk/demo/engine/NativeEngine.kt",
                   "app/src/main/java/com/mobilesdk/demo/engine/VideoEngine.kt",
                   "app/src/main/java/com/mobilesdk/demo/BenchmarkActivity.kt",
                   "app/src/main/java/com/mobilesdk/demo/MainActivity.kt"):
        assert needed in rel, f"android_demo/{needed} is missing"
    problems = []
    for path in files:
        for node in walk(parse(path)):
            if node.type == "ERROR" or node.is_missing:
                kind = f"missing {node.type}" if node.is_missing else "syntax error"
                problems.append(f"{path.relative_to(REPO)}:{node.start_point.row + 1}: {kind} at {text(node)[:60]!r}")
    assert not problems, "Kotlin that tree-sitter-kotlin cannot parse:\n" + "\n".join(problems)


def _type_after(children, index) -> str | None:
    """The type annotation following children[index] (after a ':'), whitespace removed."""
    rest = children[index + 1:]
    if len(rest) >= 2 and rest[0].type == ":":
        return re.sub(r"\s+", "", text(rest[1]))
    return None


def native_engine_externals() -> dict[str, tuple[list[str], str]]:
    root = parse(NATIVE_ENGINE)
    objects = [n for n in walk(root) if n.type == "object_declaration"
               and any(c.type == "identifier" and text(c) == "NativeEngine" for c in n.children)]
    assert len(objects) == 1, "NativeEngine.kt must declare `object NativeEngine`"
    found = {}
    for fn in walk(objects[0]):
        if fn.type != "function_declaration":
            continue
        modifiers = next((c for c in fn.children if c.type == "modifiers"), None)
        modifier_text = text(modifiers) if modifiers else ""
        if not re.search(r"\bexternal\b", modifier_text):
            continue
        name = next(text(c) for c in fn.children if c.type == "identifier")
        assert "@JvmStatic" in modifier_text, f"NativeEngine.{name} must be @JvmStatic (the bridge registers static methods)"
        children = list(fn.children)
        params_at = next(i for i, c in enumerate(children) if c.type == "function_value_parameters")
        params = []
        for p in children[params_at].children:
            if p.type == "parameter":
                pc = list(p.children)
                params.append(_type_after(pc, next(i for i, c in enumerate(pc) if c.type == "identifier")))
        found[name] = (params, _type_after(children, params_at) or "Unit")
    return found


def test_native_engine_declares_exactly_the_jni_interface():
    assert native_engine_externals() == EXPECTED_EXTERNALS
    source = NATIVE_ENGINE.read_text()
    assert re.search(r'System\.loadLibrary\(\s*"mvd_jni"\s*\)', source), "NativeEngine must load libmvd_jni.so"
    assert re.search(r"class\s+EngineException\s*\(\s*message\s*:\s*String\s*\)\s*:\s*RuntimeException\(\s*message\s*\)", source)
    assert re.search(r"fun\s+interface\s+ProgressListener\s*\{\s*fun\s+onStep\(\s*step\s*:\s*Int\s*,\s*totalSteps\s*:\s*Int\s*\)\s*:\s*Boolean",
                     source)


def test_jni_harness_declares_the_same_natives():
    assert JAVA_HARNESS.exists(), f"{JAVA_HARNESS.relative_to(REPO)}: the JNI bridge's Java harness is missing"
    source = re.sub(r"/\*.*?\*/|//[^\n]*", "", JAVA_HARNESS.read_text(), flags=re.S)
    natives = {}
    for modifiers, ret, name, params in re.findall(
            r"((?:\b(?:public|private|protected|static|native|final|synchronized)\s+)+)([\w.\[\]<>]+)\s+(\w+)\s*\(([^)]*)\)\s*;", source):
        if "native" not in modifiers.split():
            continue
        assert "static" in modifiers.split(), f"{name} must be static in the harness, as @JvmStatic makes it in Kotlin"
        declared = [re.sub(r"@\w+|\bfinal\b", "", p).strip() for p in params.split(",") if p.strip()]
        types = [re.sub(r"\s+", "", d.rsplit(None, 1)[0]) for d in declared]
        natives[name] = (types, ret)
    expected = {name: ([KOTLIN_TO_JAVA[t] for t in params], KOTLIN_TO_JAVA[ret])
                for name, (params, ret) in EXPECTED_EXTERNALS.items()}
    assert natives == expected


def _contract_literals() -> list[str]:
    """Package file and folder names that Kotlin must take from ContractNames, never spell itself."""
    pkg = NAMES["package"]
    names = [pkg["manifest"], pkg["tokenizer"], pkg["test_vector_dir"], pkg["suffix"]]
    for target in NAMES["targets"].values():
        names += [target["dir"] + "/", target["suffix"]]
    return names + list(NAMES["results"].values())[:2]


def test_package_names_come_from_contract_names():
    forbidden = _contract_literals()
    offences = []
    sources = [p for p in kotlin_files((".kt",)) if p != CONTRACT_NAMES_KT]
    for path in sources:
        for lit in string_literals(parse(path)):
            value = literal_value(lit)
            offences += [f"{path.relative_to(REPO)}:{lit.start_point.row + 1}: {value!r} spells {name!r}"
                         for name in forbidden if name in value]
    assert not offences, "use ContractNames constants instead:\n" + "\n".join(offences)
    used = "\n".join(p.read_text() for p in sources)
    for constant in ("MANIFEST_FILE", "PACKAGE_SUFFIX", "PIPELINE_BENCHMARK_FORMAT"):
        assert f"ContractNames.{constant}" in used, f"the app should use ContractNames.{constant}"


def _schema_keys(node) -> set[str]:
    keys = set()
    if isinstance(node, dict):
        keys |= set(node.get("properties", {})) | set(node.get("required", []))
        for value in node.values():
            keys |= _schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= _schema_keys(value)
    return keys


def test_results_fields_are_in_the_benchmark_schema():
    allowed = _schema_keys(BENCHMARK_SCHEMA)
    readers = [p for p in kotlin_files((".kt",)) if "ContractNames.PIPELINE_BENCHMARK_FORMAT" in p.read_text()]
    assert readers, "no Kotlin file handles pipeline-benchmark results"
    used = {}
    for path in readers:
        for call in walk(parse(path)):
            if call.type != "call_expression" or call.children[0].type != "navigation_expression":
                continue
            method = text(call.children[0].children[-1])
            args = next((c for c in call.children if c.type == "value_arguments"), None)
            first = next((c for c in args.children if c.type == "value_argument"), None) if args else None
            if method in JSON_ACCESSORS and first is not None and first.children[0].type == "string_literal":
                used[literal_value(first.children[0])] = f"{path.relative_to(REPO)}:{call.start_point.row + 1}"
    assert used, "expected the benchmark code to read results fields by name"
    unknown = {k: where for k, where in used.items() if k not in allowed}
    assert not unknown, f"fields not in pipeline-benchmark.v1.schema.json: {unknown}"
    assert set(NAMES["results"]["metrics"]) <= allowed  # the metric names the app takes from ContractNames.METRICS


def test_benchmark_activity_reads_the_documented_extras():
    values = {literal_value(n) for n in string_literals(parse(SRC / "BenchmarkActivity.kt"))}
    assert {"package", "prompt", "seed", "warmup", "runs", "out", "threads", "verify"} <= values
    readme = (APP / "README.md").read_text()
    assert "com.mobilesdk.demo/.BenchmarkActivity" in readme
    for extra in ("--es package", "--es prompt", "--el seed", "--ei warmup", "--ei runs", "--es out"):
        assert extra in readme, f"README's benchmark command lacks {extra}"


def test_manifest_and_build_files():
    android = "{http://schemas.android.com/apk/res/android}"
    app = ET.parse(APP / "app/src/main/AndroidManifest.xml").getroot().find("application")
    activities = {a.get(f"{android}name"): a for a in app.findall("activity")}
    assert set(activities) == {".MainActivity", ".BenchmarkActivity"}
    launcher = activities[".MainActivity"].find("intent-filter")
    assert launcher is not None and launcher.find("category").get(f"{android}name") == "android.intent.category.LAUNCHER"
    assert activities[".BenchmarkActivity"].get(f"{android}exported") == "true", "adb's am start needs it exported"

    build = parse(APP / "app/build.gradle.kts")
    values = {literal_value(n) for n in string_literals(build)}
    assert {"src/main/cpp/CMakeLists.txt", "arm64-v8a"} <= values
    versions = tomllib.loads((APP / "gradle/libs.versions.toml").read_text())
    assert {"android-application", "kotlin-android", "kotlin-compose"} <= set(versions["plugins"])
    assert "include(\":app\")" in (APP / "settings.gradle.kts").read_text()
