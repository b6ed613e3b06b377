"""The package contract: generated names stay in step with names.json, real documents validate against
their schemas, mutated documents fail only with the SDK's own errors, and entry names follow one rule."""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export.nas.latency_table import load_table
from mobile_sdk.contract import codegen, names
from mobile_sdk.contract.validate import KINDS, schema, validate_document
from mobile_sdk.errors import SDKError
from mobile_sdk.package import COMPONENTS, entry_names, load_manifest, open_package, sized_entry_name
from mobile_sdk.plan import StepPlans, TemporalPlan, load_plan_file
from profiling.ingest import ingest_results
from tests.engine_fixtures import engine_cli  # noqa: F401 - fixture

DATA = Path(__file__).parent / "data"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def test_generated_names_match_names_json():
    assert codegen.stale() == [], "run: python -m mobile_sdk.contract.codegen"


def test_every_schema_parses_and_names_its_kind():
    for kind, (_, _, versions) in KINDS.items():
        for v in versions:
            assert schema(kind, v)["$id"] == f"mobile-sdk/{kind.replace('_', '-')}.v{v}"


def test_real_documents_validate(demo_package, host_run, tmp_path):
    manifest = json.loads((demo_package / "manifest.json").read_text())
    assert validate_document(manifest, "manifest", "demo") == names()["package"]["schema_version"]
    validate_document(json.loads((demo_package / "tokenizer.json").read_text()), "tokenizer", "tok")
    root, _ = host_run
    validate_document(json.loads((root / "tiny.json").read_text()), "latency_table", "host table")
    plan = StepPlans.of([{"*": "conv1d"}, {"mid.*": "attn3d"}]).to_file_dict(found_by="test")
    validate_document(plan, "plan", "plan")
    validate_document(json.loads((DATA / "coreml_results_sample.json").read_text()), "coreml_benchmark", "sample")
    shipped = Path(__file__).parents[1] / "mobile_sdk/weights/small-4step/model_index.json"
    validate_document(json.loads(shipped.read_text()), "model_index", shipped)


def test_errors_name_the_file_and_json_path(tmp_path):
    doc = StepPlans.of({"*": "conv1d"}).to_file_dict()
    doc["slots"]["mid.attn0"] = "lstm"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SDKError, match=rf"{path}: slots.mid.attn0: 'lstm' is not one of"):
        load_plan_file(path)


def _one_size(manifest: dict, version: int) -> dict:
    """The manifest as a version 1 or 2 writer gave it: one size (no sizes, no unet_methods, no sized entries)."""
    old = copy.deepcopy(manifest)
    old["schema_version"] = version
    for key in ("sizes", "unet_methods"):
        old.pop(key)
    extra = {s["unet_method"] for size in manifest["sizes"][1:] for s in size["steps"]}
    extra |= {size["vae_decoder_method"] for size in manifest["sizes"][1:]}
    for comp in old["targets"]["executorch"]["components"].values():
        comp["methods"] = {m: io for m, io in comp["methods"].items() if m not in extra}
    old["test_vectors"] = {k: v for k, v in old["test_vectors"].items() if v.get("method") not in extra}
    return old


def test_version_2_packages_still_read_and_run(step_aware_package, tmp_path, engine_cli):
    """A version 2 package (one size: the top level's) opens, generates in Python and in the engine."""
    from mobile_sdk.runtime import pipeline_from_package
    from tests.engine_fixtures import PROMPT, psnr_u8, python_frames, run_cli

    _, path, manifest = step_aware_package
    root = tmp_path / "v2.mobilepkg"
    shutil.copytree(path, root)
    (root / "manifest.json").write_text(json.dumps(_one_size(manifest, 2)))
    with open_package(root) as pkg:
        assert pkg.manifest["schema_version"] == 2 and len(pkg.sizes()) == 1
        assert pipeline_from_package(pkg).fixed_size == (4, 32, 32)
    run_cli(engine_cli, "--package", root, "--prompt", PROMPT, "--seed", 5, "--out", tmp_path / "e.npy", "--no-verify")
    assert psnr_u8(python_frames(root, PROMPT, 5), np.load(tmp_path / "e.npy")) >= 60.0
    _, summary, _ = run_cli(engine_cli, "--package", root, "--self-test", "--no-verify")
    assert summary["self_test"] == "passed"


def test_version_1_packages_still_open(step_aware_package, tmp_path):
    """A version 1 manifest (tokenizer spec inside, no noise entry) is still read."""
    _, path, manifest = step_aware_package
    old = _one_size(manifest, 1)
    old.pop("noise")
    old["tokenizer"] = {"file": "tokenizer.json", **json.loads((path / "tokenizer.json").read_text())}
    old["test_vectors"].pop("noise")
    root = tmp_path / "v1.mobilepkg"
    shutil.copytree(path, root)
    (root / "manifest.json").write_text(json.dumps(old))
    with open_package(root) as pkg:
        assert pkg.manifest["schema_version"] == 1


def test_a_manifest_cannot_point_outside_the_package(step_aware_package, tmp_path):
    _, path, manifest = step_aware_package
    root = tmp_path / "evil.mobilepkg"
    shutil.copytree(path, root)
    for bad in ("/etc/passwd", "../outside.pte", "executorch/../../x.pte"):
        m = copy.deepcopy(manifest)
        m["targets"]["executorch"]["components"]["unet"]["file"] = bad
        (root / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(SDKError, match=r"manifest.json: targets.executorch.components.unet.file"):
            open_package(root)
    m = copy.deepcopy(manifest)
    m["targets"]["executorch"]["components"]["unet"]["file"] = "test_vectors/unlisted.pte"
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SDKError, match=r"names 'test_vectors/unlisted.pte', which is not listed in \$.files"):
        open_package(root)


# ---- entry names: one rule for ExecuTorch methods and Core ML functions ----------------------

def _check_entry_names(manifest: dict) -> None:
    """The default size's entries are the plans' names, every other size's the same with its suffix (the
    decoder's with 1 frame), in every target."""
    (main,) = entry_names(1)
    plans = list(manifest["temporal_plans"])
    assert plans == entry_names(len(plans))
    sizes = [tuple(s["video"][k] for k in ("num_frames", "height", "width")) for s in manifest["sizes"]]
    unet = set(plans) | {sized_entry_name(p, size) for p in plans for size in sizes[1:]}
    decoders = {main} | {sized_entry_name(main, (1, h, w)) for _, h, w in sizes[1:] if (h, w) != sizes[0][1:]}
    assert {s["unet_method"] for s in manifest["steps"]} == set(plans)
    for size, record in zip(sizes[1:], manifest["sizes"][1:]):
        assert {s["unet_method"] for s in record["steps"]} == {sized_entry_name(p, size) for p in plans}
    assert {s["vae_decoder_method"] for s in manifest["sizes"]} == decoders
    assert set(manifest["unet_methods"]) == unet
    for target, spec in manifest["targets"].items():
        key = "methods" if target == "executorch" else "functions"
        assert set(spec["components"]["unet"][key]) == unet, target
        assert set(spec["components"]["vae_decoder"][key]) == decoders, target
        assert set(spec["components"]["text_encoder"][key]) == {main}, target


def test_entry_names_single_plan(demo_package, coreml_packages):
    _check_entry_names(json.loads((demo_package / "manifest.json").read_text()))
    _, path, manifest = coreml_packages[0]
    _check_entry_names(manifest)
    from export.lowering.coreml import inspect_mlpackage

    for comp in COMPONENTS:  # what the file itself holds, not only what the manifest says
        assert list(inspect_mlpackage(path / f"coreml/{comp}.mlpackage")["functions"]) == entry_names(1)


def test_entry_names_step_aware_and_multi_size(step_aware_package):
    _check_entry_names(step_aware_package[2])


def test_entry_names_step_aware_and_multi_size_coreml(coreml_packages):
    _, path, manifest = coreml_packages[1]
    _check_entry_names(manifest)
    from export.lowering.coreml import inspect_mlpackage

    unet = inspect_mlpackage(path / "coreml/unet.mlpackage")["functions"]
    assert {s["unet_method"] for s in manifest["steps"]} <= set(unet)


# ---- mutated documents: the SDK's own error naming the file, never another exception ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@st.composite
def mutations(draw, doc):
    """A deep copy of `doc` with one node replaced, deleted or given a new key, or its text truncated."""
    doc = copy.deepcopy(doc)
    kind = draw(st.sampled_from(["replace", "delete", "add", "truncate"]))
    if kind == "truncate":
        text = json.dumps(doc)
        return text[: draw(st.integers(0, len(text) - 1))]
    path = draw(st.sampled_from(list(_paths(doc))[1:]))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "add" and isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(st.text(max_size=8))] = draw(json_values)
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(doc)


def _must_fail_cleanly(read, path: Path) -> None:
    try:
        read(path)
    except SDKError as e:
        assert str(e).startswith(str(path)) or str(path) in str(e), str(e)


def _fuzz(doc: dict, tmp: Path, name: str, read):
    @FUZZ
    @given(mutations(doc))
    def run(text):
        path = tmp / name
        path.write_text(text)
        _must_fail_cleanly(read, path)

    run()


def test_fuzz_manifest(step_aware_package, tmp_path):
    from mobile_sdk.runtime import pipeline_from_package

    _, src, manifest = step_aware_package
    root = tmp_path / "m.mobilepkg"
    shutil.copytree(src, root)

    def read(path):  # what an app does with a package it did not build: open it, then set up the pipeline
        load_manifest(path.parent)
        pipeline_from_package(open_package(path.parent, verify=False))

    _fuzz(manifest, root, "manifest.json", read)


def test_fuzz_latency_table(host_run, tmp_path):
    root, _ = host_run
    _fuzz(json.loads((root / "tiny.json").read_text()), tmp_path, "t.json", load_table)


def test_fuzz_plan_file(tmp_path, tiny_config):
    doc = StepPlans.of([{"*": "conv1d"}, {"mid.attn0": "attn3d", "down0.*": "conv3d"}]).to_file_dict(search={"x": 1})

    def read(path):
        for plan in load_plan_file(path).resolve(tiny_config.unet):
            assert isinstance(plan, TemporalPlan)

    _fuzz(doc, tmp_path, "p.json", read)


def test_fuzz_results_file(tmp_path):
    _fuzz(json.loads((DATA / "coreml_results_sample.json").read_text()), tmp_path, "r.json", ingest_results)
