"""The iOS side (ios_demo/), checked without a Swift toolchain: every .swift file parses (tree-sitter),
and every JSON key the Swift code reads or writes is the contract's. Swift types mark the document and
JSON path they decode or encode with a `- Contract: KIND PATH` doc-comment line; their keys (CodingKeys,
else stored properties) are checked against a package the SDK writes, the manifest and tokenizer
schemas, the two results formats (their schemas and what profiling/ingest.py reads), and the index of
`profile coreml-programs`. A results file shaped exactly as the Swift benchmark writes it
(tests/data/ios_*_sample.json) is validated and ingested. The CLIP BPE tokenizer's constant tables and
Unicode classes are read out of the Swift source and compared with mobile_sdk/clip_tokenizer.py, and
the tokenizer.json its XCTest replays is kept what the Python tokenizer writes
(`.venv/bin/python -m tests.test_ios_demo` rewrites it).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tree_sitter
import tree_sitter_swift

from mobile_sdk.atomic import atomic_file
from mobile_sdk.clip_tokenizer import CONTRACTIONS, END_OF_WORD, SPECIAL_LITERALS, WHITE_SPACE, CLIPTokenizer, bytes_to_unicode
from mobile_sdk.contract import codegen, names
from mobile_sdk.contract.validate import schema as contract_schema
from mobile_sdk.contract.validate import validate_document
from tests.bpe_fixtures import tiny_bpe

REPO = Path(__file__).resolve().parents[1]
IOS = REPO / "ios_demo"
SOURCES = IOS / "MobileVideoDiffusion" / "Sources" / "MobileVideoDiffusion"
DATA = Path(__file__).parent / "data"
PIPELINE_SAMPLE = DATA / "ios_pipeline_benchmark_sample.json"
COREML_SAMPLE = DATA / "ios_coreml_benchmark_sample.json"
SWIFT_FILES = sorted(IOS.rglob("*.swift"))
CONTRACT_LINE = re.compile(r"- Contract:\s*(\S+)\s+(\$\S*)")
CLIP_FIXTURE = IOS / "MobileVideoDiffusion/Tests/MobileVideoDiffusionTests/Fixtures/clip_bpe_tokenizer.json"


def _parser():
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))


def _syntax_errors(tree) -> list[tuple[int, int, str]]:
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            out.append((node.start_point[0] + 1, node.start_point[1] + 1, "missing " + node.type if node.is_missing else "syntax error"))
        stack.extend(node.children)
    return sorted(out)


def test_swift_sources_are_all_here():
    rel = {p.relative_to(IOS).as_posix() for p in SWIFT_FILES}
    for must in ("MobileVideoDiffusion/Package.swift", "MobileVideoDiffusion/Sources/MobileVideoDiffusion/ContractNames.swift",
                 "MobileVideoDiffusion/Sources/MobileVideoDiffusion/VideoPipeline.swift", "App/Sources/MobileVideoDiffusionApp.swift",
                 "MobileVideoDiffusion/Sources/MobileVideoDiffusion/Tokenizer.swift",
                 "MobileVideoDiffusion/Sources/MobileVideoDiffusion/CLIPTokenizer.swift"):
        assert must in rel, f"{must} is missing from ios_demo/"


@pytest.mark.parametrize("path", SWIFT_FILES, ids=lambda p: p.relative_to(IOS).as_posix())
def test_swift_file_parses(path):
    errors = _syntax_errors(_parser().parse(path.read_bytes()))
    assert not errors, "\n".join(f"{path.relative_to(REPO)}:{line}:{col}: {what}" for line, col, what in errors)


def test_the_parse_check_sees_broken_swift():
    """The check above would pass vacuously if the parser accepted anything."""
    assert _syntax_errors(_parser().parse(b"struct A { let x: }\nfunc f( {"))


# ---- Swift types and their JSON keys ---------------------------------------------------------------

@dataclass
class ContractType:
    name: str
    file: str
    line: int
    targets: list[tuple[str, str]]  # (document kind, JSON path)
    keys: dict[str, bool] = field(default_factory=dict)  # JSON key -> optional in Swift

    def where(self) -> str:
        return f"{self.file}:{self.line} {self.name}"


def _text(node) -> str:
    return node.text.decode()


def _doc_comment(node) -> str:
    lines, prev = [], node.prev_sibling
    while prev is not None and prev.type in ("comment", "multiline_comment"):
        lines.insert(0, _text(prev))
        prev = prev.prev_sibling
    return "\n".join(lines)


def _is_optional(prop) -> bool:
    ann = next((c for c in prop.children if c.type == "type_annotation"), None)
    return ann is not None and any(c.type == "optional_type" for c in ann.children)


def _stored_properties(body) -> dict[str, bool]:
    """name -> optional, for instance properties that are stored (not computed, not static)."""
    out = {}
    for prop in (c for c in body.children if c.type == "property_declaration"):
        modifiers = next((c for c in prop.children if c.type == "modifiers"), None)
        if modifiers is not None and "static" in _text(modifiers).split():
            continue
        if any(c.type == "computed_property" for c in prop.children):
            continue
        out[_text(prop.child_by_field_name("name"))] = _is_optional(prop)
    return out


def _coding_keys(body) -> dict[str, str] | None:
    """case name -> JSON key of a nested `enum CodingKeys`, or None without one."""
    for decl in (c for c in body.children if c.type == "class_declaration"):
        if _text(decl.child_by_field_name("name")) != "CodingKeys":
            continue
        keys = {}
        for entry in (c for c in decl.child_by_field_name("body").children if c.type == "enum_entry"):
            case = None
            for i, child in enumerate(entry.children):
                fname = entry.field_name_for_child(i)
                if fname == "name":
                    case = _text(child)
                    keys[case] = case
                elif fname == "raw_value":
                    keys[case] = "".join(_text(t) for t in child.children if t.type == "line_str_text")
        return keys
    return None


def _contract_types() -> list[ContractType]:
    out = []
    for path in SWIFT_FILES:
        stack = [_parser().parse(path.read_bytes()).root_node]
        while stack:
            node = stack.pop()
            stack.extend(node.children)
            if node.type != "class_declaration":
                continue
            targets = CONTRACT_LINE.findall(_doc_comment(node))
            if not targets:
                continue
            body = node.child_by_field_name("body")
            props = _stored_properties(body)
            coding = _coding_keys(body)
            t = ContractType(_text(node.child_by_field_name("name")), path.relative_to(REPO).as_posix(), node.start_point[0] + 1, targets)
            if coding is None:
                t.keys = props
            else:
                missing = sorted(set(coding) - set(props))
                assert not missing, f"{t.where()}: CodingKeys case(s) {missing} name no stored property"
                t.keys = {coding[case]: props[case] for case in coding}
            out.append(t)
    return out


CONTRACT_TYPES = _contract_types()


def _types(kind: str) -> list[tuple[ContractType, str]]:
    return [(t, path) for t in CONTRACT_TYPES for k, path in t.targets if k == kind]


def test_contract_types_are_found_with_their_keys():
    """Guards the extraction itself: known types, CodingKeys raw values and optionals come out right."""
    kinds = {k for t in CONTRACT_TYPES for k, _ in t.targets}
    assert kinds == {"manifest", "tokenizer", "pipeline-benchmark", "coreml-benchmark", "coreml-programs-index"}
    by_name = {t.name: t for t in CONTRACT_TYPES}
    assert by_name["Step"].keys == {"index": False, "timestep": False, "dt": False, "unet_method": False}
    assert by_name["TestVector"].keys["seed"] is True and by_name["TestVector"].keys["min_psnr_db"] is True
    assert by_name["PipelineBenchmarkResult"].keys["stages_ms"] is False
    assert "latentShape" not in by_name["PackageManifest"].keys  # computed, not a key


# ---- JSON paths over documents and schemas ----------------------------------------------------------

def _path_steps(path: str) -> list[str]:
    assert path.startswith("$"), path
    return re.findall(r"\[\*\]|\.[^.\[]+", path[1:])


def _doc_nodes(doc, path: str) -> list:
    nodes = [doc]
    for step in _path_steps(path):
        nxt = []
        for n in nodes:
            if step == "[*]" and isinstance(n, list):
                nxt.extend(n)
            elif step == ".*" and isinstance(n, dict):
                nxt.extend(n.values())
            elif isinstance(n, dict) and step[1:] in n:
                nxt.append(n[step[1:]])
        nodes = nxt
    return [n for n in nodes if isinstance(n, dict)]


def _expand(schema: dict, node: dict) -> list[dict]:
    """Resolve local $refs and split oneOf/anyOf into their branches."""
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        return _expand(schema, target)
    out = [node]
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(key, []):
            out += _expand(schema, branch)
    return out


def _schema_nodes(schema: dict, path: str) -> list[dict]:
    nodes = _expand(schema, schema)
    for step in _path_steps(path):
        nxt = []
        for n in nodes:
            if step == "[*]":
                children = [n["items"]] if isinstance(n.get("items"), dict) else []
            elif step == ".*":
                children = [v for v in (n.get("additionalProperties"),) if isinstance(v, dict)]
                children += list(n.get("properties", {}).values()) + list(n.get("patternProperties", {}).values())
            else:
                children = [n["properties"][step[1:]]] if step[1:] in n.get("properties", {}) else []
            for c in children:
                nxt += _expand(schema, c)
        nodes = nxt
    return nodes


def _declared(nodes: list[dict]) -> tuple[set[str], set[str], bool]:
    """(declared keys, required keys, whether any node declares its keys at all)."""
    props = {k for n in nodes for k in n.get("properties", {})}
    required = {k for n in nodes for k in n.get("required", [])}
    return props | required, required, any("properties" in n or "required" in n for n in nodes)


# ---- the manifest and tokenizer: keys the Swift reads exist where the SDK writes them ----------------

@pytest.fixture(scope="module")
def tiny_package(coreml_packages):
    """A tiny package with the Core ML target, written by the SDK itself (the session's shared export)."""
    return coreml_packages[0][1]


def _manifest_schemas() -> dict[int, dict]:
    return {v: contract_schema("manifest", v) for v in names()["package"]["reads_versions"]}


def test_written_manifest_is_valid_and_readable_by_swift(tiny_package):
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    version = validate_document(manifest, "manifest", tiny_package / "manifest.json")
    assert version in names()["package"]["reads_versions"]
    assert "coreml" in manifest["targets"]


def test_manifest_keys_the_swift_reads_exist_in_a_written_manifest(tiny_package):
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    current = _manifest_schemas()[names()["package"]["schema_version"]]
    problems = []
    for t, path in _types("manifest"):
        nodes = _doc_nodes(manifest, path)
        declared, _, checks = _declared(_schema_nodes(current, path))
        if not nodes:
            # Written only by other packages (a chained component): the schema must declare its keys.
            if not checks or set(t.keys) - declared:
                problems.append(f"{t.where()}: {path} is neither in the written manifest nor declares {sorted(t.keys)} in the current manifest schema")
            continue
        for key, optional in t.keys.items():
            if not optional:
                absent = sum(key not in n for n in nodes)
                if absent:
                    problems.append(f"{t.where()}: required key {path}.{key} is missing from {absent} of {len(nodes)} object(s)")
            elif not any(key in n for n in nodes) and key not in declared:
                problems.append(f"{t.where()}: optional key {path}.{key} is neither written nor in the current manifest schema")
    assert not problems, "\n".join(problems)


def test_manifest_keys_the_swift_reads_are_in_the_schemas():
    """Keys the Swift needs must be required by every manifest version it reads (else a valid manifest
    could fail to decode); optional ones must be declared by at least one version."""
    schemas = _manifest_schemas()
    problems = []
    for t, path in _types("manifest"):
        declared_anywhere = set()
        for version, schema in schemas.items():
            declared, required, checks = _declared(_schema_nodes(schema, path))
            declared_anywhere |= declared
            if not checks:
                continue  # a free-form node (e.g. io lists): the written-manifest test covers it
            for key, optional in t.keys.items():
                if not optional and key not in required:
                    problems.append(f"{t.where()}: {path}.{key} is not optional in Swift but manifest v{version} does not require it")
        for key, optional in t.keys.items():
            if optional and declared_anywhere and key not in declared_anywhere:
                problems.append(f"{t.where()}: optional {path}.{key} is declared by no manifest schema")
    assert not problems, "\n".join(problems)


def test_tokenizer_keys_match_the_written_tokenizers(tiny_package):
    """Each Swift tokenizer type reads keys that tokenizer.v2.schema.json declares and that a tokenizer.json
    the SDK writes has: the byte one of a package, and a CLIP BPE one (required keys in every object)."""
    byte, clip = names()["tokenizers"]["types"]
    docs = {byte: json.loads((tiny_package / "tokenizer.json").read_text()), clip: clip_fixture()}
    assert docs[byte]["type"] == byte
    for doc in docs.values():
        validate_document(doc, "tokenizer", tiny_package / "tokenizer.json")
    v2 = contract_schema("tokenizer", 2)
    problems, readable = [], {}
    for t, path in _types("tokenizer"):
        undeclared = set(t.keys) - _declared(_schema_nodes(v2, path))[0]
        if undeclared:
            problems.append(f"{t.where()}: {path} keys {sorted(undeclared)} are not in tokenizer.v2.schema.json")
        required = {k for k, optional in t.keys.items() if not optional}
        readable[t.name] = {kind for kind, doc in docs.items()
                            if (nodes := _doc_nodes(doc, path)) and all(required <= set(n) for n in nodes)}
    assert not problems, "\n".join(problems)
    assert readable == {"TokenizerHeader": {byte, clip}, "ByteTokenizer": {byte}, "CLIPTokenizerSpec": {clip},
                        "TokenizerExamples": {byte, clip}, "Example": {clip}}
    [header] = [t for t, _ in _types("tokenizer") if t.name == "TokenizerHeader"]
    assert header.keys == {"version": True, "type": False}, "the reader must see the version to refuse a newer one"


def test_micro_model_index_keys_match_what_profile_coreml_programs_writes(tmp_path):
    from export.nas.model_blocks import model_blocks
    from mobile_sdk.config import load_preset
    from profiling.coreml_bench import build_coreml_programs

    blocks = model_blocks(load_preset("tiny"))
    index = json.loads(build_coreml_programs(blocks, tmp_path, preset="tiny", signatures=[blocks.text_encoder], progress=False).read_text())
    problems = []
    for t, path in _types("coreml-programs-index"):
        for node in _doc_nodes(index, path) or [{}]:
            if {k for k, opt in t.keys.items() if not opt} - set(node) or set(node) - set(t.keys):
                problems.append(f"{t.where()}: Swift keys {sorted(t.keys)} vs index.json {path} keys {sorted(node)}")
    assert not problems, "\n".join(problems)


# ---- results: the Swift writes exactly the formats' keys ---------------------------------------------

def _schema_for(kind: str) -> dict:
    return contract_schema(kind.replace("-", "_"), 1)


@pytest.mark.parametrize("kind", ["pipeline-benchmark", "coreml-benchmark"])
def test_results_keys_the_swift_writes_are_exactly_the_schemas(kind):
    schema = _schema_for(kind)
    problems = []
    found = _types(kind)
    assert found, f"no Swift type writes {kind}"
    for t, path in found:
        declared, required, checks = _declared(_schema_nodes(schema, path))
        assert checks, f"{t.where()}: {path} declares no keys in {kind}.v1"
        if set(t.keys) != declared:
            problems.append(f"{t.where()}: writes {sorted(t.keys)}, {kind}.v1 {path} has {sorted(declared)}")
        for key in required:
            if t.keys.get(key, True):
                problems.append(f"{t.where()}: {path}.{key} is required by {kind}.v1 but optional (or absent) in Swift")
    covered = {path for _, path in found}
    assert "$" in covered
    assert not problems, "\n".join(problems)


def test_pipeline_metrics_are_the_contract_names():
    """The Swift writes metrics as zip(ContractNames.metrics, [load, average, trimmed mean, PSS, peak RSS])."""
    metrics = names()["results"]["metrics"]
    assert metrics == ["model_load_time(ms)", "avg_inference_latency(ms)", "trimmean_inference_latency(ms)",
                       "ram_pss_usage(mb)", "peak_rss(mb)"], "names.json reordered the metrics: update PipelineMetrics.encode"
    assert dict(codegen.constants())["METRICS"] == metrics
    assert set(metrics) == _declared(_schema_nodes(_schema_for("pipeline-benchmark"), "$.metrics"))[0]
    source = (SOURCES / "BenchmarkResults.swift").read_text()
    assert "zip(ContractNames.metrics, values)" in source
    assert "let values = [modelLoadMs, averageMs, trimmedMeanMs, pssMB, peakRSSMB]" in source


def test_coreml_results_keys_are_what_ingest_reads():
    """profiling/ingest.py is the reader: the Swift writes every key it reads, and each result's fields."""
    from profiling import ingest

    source = Path(ingest.__file__).read_text()
    read_top = set(re.findall(r'data\["(\w+)"\]', source)) | set(re.findall(r'data\.get\("(\w+)"', source))
    read_item = set(re.findall(r'r\["(\w+)"\]', source)) | set(re.findall(r'r\.get\("(\w+)"', source))
    [top] = [t for t, p in _types("coreml-benchmark") if p == "$"]
    [item] = [t for t, p in _types("coreml-benchmark") if p == "$.results[*]"]
    assert {"format", "results", "compute_units"} <= read_top <= set(top.keys), f"{top.where()}: ingest reads {sorted(read_top)}"
    assert set(item.keys) == read_item, f"{item.where()}: writes {sorted(item.keys)}, ingest reads {sorted(read_item)}"


@pytest.mark.parametrize("kind,sample", [("pipeline-benchmark", PIPELINE_SAMPLE), ("coreml-benchmark", COREML_SAMPLE)])
def test_sample_results_are_shaped_as_the_swift_writes_them(kind, sample):
    doc = json.loads(sample.read_text())
    validate_document(doc, kind.replace("-", "_"), sample)
    problems = []
    for t, path in _types(kind):
        for node in _doc_nodes(doc, path):
            must = {k for k, opt in t.keys.items() if not opt}
            if must - set(node) or set(node) - set(t.keys):
                problems.append(f"{sample.name} {path}: keys {sorted(node)}, {t.where()} writes {sorted(t.keys)}")
    assert not problems, "\n".join(problems)
    if kind == "pipeline-benchmark":
        assert set(doc["metrics"]) == set(names()["results"]["metrics"])
        # Written by JSONEncoder with .sortedKeys and .prettyPrinted: sorted keys, "key" : value.
        assert sample.read_text() == json.dumps(doc, indent=2, sort_keys=True, separators=(",", " : "))


def test_ingest_reads_the_results_the_swift_benchmark_writes():
    from profiling.ingest import ingest_results

    doc = json.loads(COREML_SAMPLE.read_text())
    table = ingest_results(COREML_SAMPLE)
    assert set(table.entries) == {r["signature"] for r in doc["results"]}
    assert table.header["compute_unit"] == doc["compute_units"]
    assert table.header["provenance"]["kind"] == "measured"
    for r in doc["results"]:
        times = np.sort(r["times_ms"])
        k = int(len(times) * 0.1)
        assert table.entries[r["signature"]].mean_ms == pytest.approx(times[k:len(times) - k].mean())
        assert table.entries[r["signature"]].weight_bytes == r["weight_bytes"]


# ---- what the Swift computes itself ------------------------------------------------------------------

def test_swift_noise_reference_values_are_the_python_generators():
    from mobile_sdk.noise import portable_normal

    source = (IOS / "MobileVideoDiffusion/Tests/MobileVideoDiffusionTests/PackageReaderTests.swift").read_text()
    rows = re.findall(r"\((\d+), (\d+), \[([^\]]*)\]\)", source)
    assert len(rows) >= 3
    for seed, offset, bits in rows:
        want = [int(b, 16) for b in bits.split(",")]
        got = portable_normal(int(seed), (len(want),), offset=int(offset)).view(np.uint32).tolist()
        assert got == want, f"seed {seed} offset {offset}"


def test_portable_noise_swift_uses_only_exact_arithmetic():
    from mobile_sdk import noise

    path = SOURCES / "PortableNoise.swift"
    source = re.sub(r"//.*", "", path.read_text())  # code only: the comments name cos and ln
    assert not re.search(r"^\s*import\s", source, re.M), f"{path}: must not import a math library"
    calls = set(re.findall(r"\b(log|log2|log1p|exp|cos|sin|pow|fma|addingProduct|frexp)\s*\(", source))
    assert not calls, f"{path}: uses {sorted(calls)}; only + - * / sqrt are exact everywhere"
    consts = {name: value for name, value in re.findall(r"static let (\w+)(?:: \w+)? = (0x[0-9A-Fa-f_]+|\d+\.\d+)\b", source)}
    assert int(consts["gamma"].replace("_", ""), 16) == noise.GAMMA
    assert int(consts["mix1"].replace("_", ""), 16) == noise.MIX1
    assert int(consts["mix2"].replace("_", ""), 16) == noise.MIX2
    assert float(consts["sqrtHalf"]) == noise.SQRT_HALF
    assert float(consts["ln2"]) == noise.LN2
    assert float(consts["halfPi"]) == noise.HALF_PI


def test_positional_contract_names_pick_the_intended_names():
    """ComponentNames.swift indexes ContractNames lists; a reorder in names.json must not swap them."""
    constants = {codegen._camel(n): v for n, v in codegen.constants()}
    source = (SOURCES / "ComponentNames.swift").read_text()
    picked = {name: constants[lst][int(i)] for name, lst, i in re.findall(r"static let (\w+) = ContractNames\.(\w+)\[(\d+)\]", source)}
    assert picked == {"textEncoder": "text_encoder", "unet": "unet", "vaeDecoder": "vae_decoder", "inputIds": "input_ids",
                      "hiddenStates": "last_hidden_state", "sample": "sample", "timestep": "timestep",
                      "encoderHiddenStates": "encoder_hidden_states", "velocity": "velocity", "latents": "latents", "rgb": "rgb"}


def test_library_sources_spell_no_contract_name():
    """Contract names come from the generated ContractNames only (results keys, checked above, aside)."""
    values = set()
    for name, value in codegen.constants():
        if name.endswith(("_DIR", "_TARGET")):
            continue  # "coreml" is also the results' runtime name, which is neither a path nor a manifest key
        values.update(value if isinstance(value, list) else [value])
    values = {v for v in values if isinstance(v, str)}
    problems = []
    for path in sorted(SOURCES.glob("*.swift")):
        if path.name == "ContractNames.swift":
            continue
        stack = [_parser().parse(path.read_bytes()).root_node]
        while stack:
            node = stack.pop()
            stack.extend(node.children)
            if node.type == "line_string_literal" and node.parent.type != "enum_entry":
                text = "".join(_text(c) for c in node.children if c.type == "line_str_text")
                if text in values:
                    problems.append(f"{path.relative_to(REPO)}:{node.start_point[0] + 1}: \"{text}\" (use ContractNames)")
    assert not problems, "\n".join(problems)



def test_swift_steps_refuse_a_scheduler_they_do_not_implement():
    """The manifest's scheduler type is the contract's (an imported DDIM model's package too); the Swift
    reader compares against the generated name."""
    for version in names()["package"]["reads_versions"]:
        assert _manifest_schemas()[version]["properties"]["scheduler"]["properties"]["type"] == {"const": names()["scheduler"]["type"]}
    assert "manifest.scheduler.type == ContractNames.schedulerType" in (SOURCES / "RectifiedFlowSteps.swift").read_text()


# ---- the CLIP BPE tokenizer ----------------------------------------------------------------------------

CLIP_CORPUS = ("a red circle moving right on a blue background, a photo of an astronaut riding a horse on the moon; "
               "it's a beautiful day and we're going to the sea shore: café, naïve, 東京タワー, 1999 highly detailed 4k")
# Beyond the SDK's EXAMPLE_PROMPTS: where Swift's String (grapheme clusters, canonical equivalence) and
# Unicode data could part from Python's str, and each splitting rule at its edges.
EXTRA_PROMPTS = (
    "e\u0301 \u1100\u1161\u11a8 \u212b \u0041\u030a q\u0308b \u0301\u0301abc",  # NFD in, NFC; lone marks are 'other'
    "\u0130STANBUL \u1f48\u0394\u03a5\u03a3\u03a3\u0395\u038e\u03a3 \u00df \ufb01 \u0149 \u01c5ungla",  # full lower-case, no final sigma
    "'s 'S IT'S ''s 'll'd 're've'm x'y",  # contractions after lower-casing, back to back
    "<|ENDOFTEXT|> <|startoftext|><|endoftext|> <|endoftext <|> |>",  # upper case is text; partial literals
    "\u2167 \u2460 \u0663\u0664 \U0001d7d8 x\u2082 1\u00bd 2024",  # letter, other and decimal numbers: one each
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1ef\U0001f1f5 \ue000 a_b-c.d/e\\f",  # ZWJ, flags, private use
    "tab\t\t\tnew\n\n\u2028\u0085line\u180e\u200b\u2060end\u3000 ",  # White_Space runs and look-alikes
    "x" * 120 + " " + "!?" * 80,  # one long word of letters, one of other characters, both past max_length
)


@functools.cache
def clip_fixture() -> dict:
    """The tokenizer.json the Swift XCTest replays (Fixtures/clip_bpe_tokenizer.json): a small BPE in CLIP's
    layout (pad = eos, as CLIP's), with the ids of EXAMPLE_PROMPTS and EXTRA_PROMPTS."""
    vocab, merges = tiny_bpe(CLIP_CORPUS)
    eos = vocab["<|endoftext|>"]
    tok = CLIPTokenizer(vocab, merges, 77, vocab["<|startoftext|>"], eos, eos, eos)
    spec = tok.to_dict()
    spec["examples"] += [{"text": p, "ids": tok.encode(p)} for p in EXTRA_PROMPTS]
    return spec


def test_swift_clip_fixture_is_what_the_python_tokenizer_writes():
    spec = json.loads(CLIP_FIXTURE.read_text())
    assert spec == clip_fixture(), "run: .venv/bin/python -m tests.test_ios_demo"
    validate_document(spec, "tokenizer", CLIP_FIXTURE)
    assert CLIP_FIXTURE.read_text().isascii(), "escaped, so no editor can re-normalise the NFD prompts"
    tok = CLIPTokenizer.from_dict(spec)
    merged = {i for e in spec["examples"] for i in e["ids"]} & set(range(512, spec["bos_id"]))
    assert len(merged) >= 20, "the examples should exercise merges, not only single bytes"
    assert sum(tok.dropped_bytes(e["text"]) > 0 for e in spec["examples"]) >= 2, "and truncation"


def _swift_literal(source: str, name: str) -> str:
    """The first [...] literal after `static let NAME...=` in Swift source."""
    match = re.search(rf"static let {name}\b[^=]*=\s*(\[[^\]]*\])", source)
    assert match, f"no `static let {name}` array in the Swift source"
    return match.group(1)


def _swift_strings(literal: str) -> tuple[str, ...]:
    return tuple(json.loads(f'"{s}"') for s in re.findall(r'"((?:[^"\\]|\\.)*)"', literal))


def _swift_ranges(literal: str) -> list[range]:
    return [range(int(a, 16), int(b, 16) + 1) for a, b in re.findall(r"0x([0-9A-Fa-f]+)\.\.\.0x([0-9A-Fa-f]+)", literal)]


def test_swift_clip_tables_are_the_python_tokenizers():
    source = (SOURCES / "CLIPTokenizer.swift").read_text()
    assert _swift_strings(_swift_literal(source, "specialLiterals")) == SPECIAL_LITERALS
    assert _swift_strings(_swift_literal(source, "contractions")) == CONTRACTIONS
    assert re.search(r'static let endOfWord = "([^"]*)"', source).group(1) == END_OF_WORD
    assert {chr(c) for r in _swift_ranges(_swift_literal(source, "whiteSpace")) for c in r} == WHITE_SPACE
    # byteCharacters: a byte in printableBytes is its own character, the others U+0100, U+0101, ... in order
    printable = {b for r in _swift_ranges(_swift_literal(source, "printableBytes")) for b in r}
    extra = iter(range(0x100, 0x200))
    assert {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)} == bytes_to_unicode()


# Swift's Unicode.GeneralCategory cases and the two-letter names of Python's unicodedata.category().
SWIFT_GENERAL_CATEGORIES = {
    "uppercaseLetter": "Lu", "lowercaseLetter": "Ll", "titlecaseLetter": "Lt", "modifierLetter": "Lm", "otherLetter": "Lo",
    "nonspacingMark": "Mn", "spacingMark": "Mc", "enclosingMark": "Me", "decimalNumber": "Nd", "letterNumber": "Nl",
    "otherNumber": "No", "connectorPunctuation": "Pc", "dashPunctuation": "Pd", "openPunctuation": "Ps",
    "closePunctuation": "Pe", "initialPunctuation": "Pi", "finalPunctuation": "Pf", "otherPunctuation": "Po",
    "mathSymbol": "Sm", "currencySymbol": "Sc", "modifierSymbol": "Sk", "otherSymbol": "So", "spaceSeparator": "Zs",
    "lineSeparator": "Zl", "paragraphSeparator": "Zp", "control": "Cc", "format": "Cf", "surrogate": "Cs",
    "privateUse": "Co", "unassigned": "Cn",
}


def test_swift_clip_word_classes_are_pythons_categories():
    """CLIP's \\p{L} and \\p{N}: the Swift switch names exactly the L* and N* general categories."""
    source = (SOURCES / "CLIPTokenizer.swift").read_text()
    classes = {kind: {SWIFT_GENERAL_CATEGORIES[c] for c in re.findall(r"\.(\w+)", cases)}
               for cases, kind in re.findall(r"case ((?:\.\w+,?\s*)+): return \.(letter|number)", source)}
    assert classes == {"letter": {c for c in SWIFT_GENERAL_CATEGORIES.values() if c[0] == "L"},
                       "number": {c for c in SWIFT_GENERAL_CATEGORIES.values() if c[0] == "N"}}
    assert "scalar.properties.generalCategory" in source and "scalar.properties.lowercaseMapping" in source
    assert "precomposedStringWithCanonicalMapping" in source


def test_swift_reads_every_tokenizer_type_by_its_contract_name():
    """Tokenizers.load has a case for each type names.json lists, spelled through ContractNames; the
    pipeline holds whichever it returns."""
    source = (SOURCES / "Tokenizer.swift").read_text()
    cases = set(re.findall(r"case ContractNames\.(\w+):", source))
    assert cases == {codegen._camel(f"TOKENIZER_{t.upper()}") for t in names()["tokenizers"]["types"]}
    assert "public let tokenizer: any Tokenizer" in (SOURCES / "VideoPipeline.swift").read_text()
    assert "public func tokenizer() throws -> any Tokenizer" in (SOURCES / "MobilePackage.swift").read_text()


def write_clip_fixture() -> None:
    with atomic_file(CLIP_FIXTURE) as tmp:
        tmp.write_text(json.dumps(clip_fixture(), ensure_ascii=True) + "\n")


if __name__ == "__main__":
    write_clip_fixture()
    print(f"wrote {CLIP_FIXTURE.relative_to(REPO)}")
