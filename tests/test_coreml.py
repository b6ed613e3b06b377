"""Core ML target: what Linux can check (spec, ops, IO, dtypes, sizes, metadata); numerics on macOS only."""
import json
import platform

import numpy as np
import pytest
import torch

from export.lowering.coreml import ane_unsupported_ops, inspect_mlpackage
from export.lowering.package_writer import export_package
from mobile_sdk.package import open_package
from mobile_sdk.pipeline import VideoPipeline

from tests.conftest import STEP_PLANS, observe_calls


def test_components_io_and_dtypes_match_the_manifest(coreml_packages):
    _, path, manifest = coreml_packages[0]
    target = manifest["targets"]["coreml"]
    assert target["deployment_target"] == "iOS17" and target["compute_precision"] == "float16"
    with open_package(path) as pkg:
        for comp, io in {"text_encoder": (["input_ids"], ["last_hidden_state", "pooled"]),
                         "unet": (["sample", "timestep", "encoder_hidden_states"], ["velocity"]),
                         "vae_decoder": (["latents"], ["rgb"])}.items():
            entry = pkg.component("coreml", comp)
            spec = inspect_mlpackage(pkg.path(entry["file"]))
            assert [i["name"] for i in spec["inputs"]] == io[0]
            assert [o["name"] for o in spec["outputs"]] == io[1]
            assert spec["inputs"] == entry["inputs"]
            expect = "int32" if comp == "text_encoder" else "float16"
            assert spec["inputs"][0]["dtype"] == expect
    unet_in = {i["name"]: i["shape"] for i in target["components"]["unet"]["inputs"]}
    assert unet_in["sample"] == [1, 4, 4, 4, 4]


def test_ops_are_listed_and_ane_flags_come_from_the_data_file(coreml_packages):
    _, _, manifest = coreml_packages[0]
    comps = manifest["targets"]["coreml"]["components"]
    unet_ops = comps["unet"]["functions"]["main"]["op_counts"]
    assert unet_ops.get("conv", 0) > 0 and unet_ops.get("einsum", 0) + unet_ops.get("matmul", 0) > 0
    te_flags = comps["text_encoder"]["functions"]["main"]["ane_flags"]
    assert [f["op"] for f in te_flags] == ["gather"]  # the token embedding lookup
    assert all(e["source"].startswith("https://") for e in ane_unsupported_ops())


def test_conversion_traces_the_ane_layout_and_leaves_the_models_as_they_were(coreml_packages):
    """The converter switches the layout in place (no copy of the weights) and switches it back."""
    for pipe, _, manifest in coreml_packages:
        impls = {m.impl for comp in (pipe.text_encoder, pipe.unet) for m in comp.modules() if hasattr(m, "impl")}
        assert impls == {"default"}
        ops = manifest["targets"]["coreml"]["components"]["unet"]["functions"]
        assert all(fn["op_counts"].get("einsum", 0) > 0 for fn in ops.values())  # split-einsum attention: the ANE layout


def test_metadata_is_embedded(coreml_packages):
    _, path, _ = coreml_packages[0]
    meta = inspect_mlpackage(path / "coreml/unet.mlpackage")["metadata"]
    assert meta["mobile_sdk.preset"] == "tiny"
    assert meta["mobile_sdk.component"] == "unet"
    assert "down0.res0" in json.loads(meta["mobile_sdk.temporal_plans"])["main"]


def test_step_aware_multifunction_with_extra_size(coreml_packages):
    _, _, manifest = coreml_packages[1]
    target = manifest["targets"]["coreml"]
    assert target["deployment_target"] == "iOS18"  # multifunction models need iOS 18
    unet = target["components"]["unet"]
    assert sorted(unet["functions"]) == ["plan_0", "plan_0__8x32x32", "plan_1", "plan_1__8x32x32"]
    assert unet["functions"]["plan_1__8x32x32"]["size"] == [8, 32, 32]
    # shared weights are stored once: four functions cost far less than four single models
    assert unet["bytes"] < 2.5 * unet["single_function_bytes"]
    assert [s["video"]["num_frames"] for s in manifest["sizes"]] == [4, 8]  # one size list for every target
    assert [s["vae_decoder_method"] for s in manifest["sizes"]] == ["main", "main"]  # 8 frames of the same 32x32
    assert [s["unet_method"] for s in manifest["sizes"][1]["steps"]] == ["plan_0__8x32x32"] * 2 + ["plan_1__8x32x32"] * 2


def test_palettization_shrinks_the_weights(coreml_packages):
    _, _, manifest = coreml_packages[1]
    for comp in ("unet", "vae_decoder"):
        c = manifest["targets"]["coreml"]["components"][comp]
        # tiny weights are mostly under the 2048-element threshold; the small preset shows the real ratio
        assert c["compression"] == "palettize6" and c["bytes"] < c["fp16_bytes"], comp
        assert c["palettization"]["average_bits"] == 6.0 and set(c["palettization"]["elements_by_bits"]) == {"6"}
    assert manifest["quantization"]["coreml"] == "palettize6"


def test_multifunction_needs_ios18(tmp_path):
    from export.lowering.coreml import CoreMLOptions

    pipe = VideoPipeline.from_preset("tiny", seed=0, plan=STEP_PLANS)
    with pytest.raises(ValueError, match="need iOS 18"):
        export_package(pipe, tmp_path / "x.mobilepkg", targets=("coreml",), log=lambda s: None,
                       coreml_options=CoreMLOptions(deployment_target="iOS17"))
    assert not (tmp_path / "x.mobilepkg").exists()


@pytest.mark.macos
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML runs models only on macOS")
def test_coreml_matches_pytorch_on_macos(coreml_packages):
    """PSNR gate: Core ML (fp16, ANE layout) against eager PyTorch on the package's test vectors."""
    import coremltools as ct

    from export.lowering.parity import psnr

    pipe, path, manifest = coreml_packages[0]
    with open_package(path) as pkg:
        for name, spec in manifest["test_vectors"].items():
            if spec["component"] in ("pipeline", "noise"):
                continue
            model = ct.models.MLModel(str(pkg.path(pkg.component("coreml", spec["component"])["file"])))
            vec = pkg.test_vector(name)
            inputs = {k: (v.astype(np.int32) if v.dtype == np.int64 else v.astype(np.float16)) for k, v in vec["inputs"].items()}
            out = model.predict(inputs)
            for k, want in vec["outputs"].items():
                assert psnr(want, np.asarray(out[k], dtype=np.float32)) >= 35.0, (name, k)


class _Branchy(torch.nn.Linear):
    def forward(self, x):
        y = super().forward(x)
        return y * 2 if y.sum() > 0 else y  # a Python bool of a tensor: the tracer warns


def test_conversion_prints_nothing_of_its_own_in_the_cli(monkeypatch, capfd):
    """The tracer's warnings and coremltools' progress bars are held back as the CLI's other noise is
    (and shown when the call fails, or with -v)."""
    from export.lowering.coreml import CoreMLOptions, compress, convert
    from export.lowering.palettization import palettized, plan_palettization
    from mobile_sdk import quiet

    monkeypatch.setattr(quiet, "_quiet_native", True)
    layer, example = _Branchy(64, 64), (torch.ones(1, 64),)
    plan = plan_palettization([layer], observe_calls([(layer, example)]), "palettize6")
    with palettized(plan):
        model = convert(layer, example, ["x"], ["y"], CoreMLOptions(deployment_target="iOS17"), {})
    ops = [op.op_type for op in compress(model, "palettize6")._mil_program.functions["main"].operations]
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert "constexpr_lut_to_dense" in ops


def test_inspect_reads_a_core_ml_only_package(coreml_packages, capsys):
    """A package without an ExecuTorch target (functions, not methods; compression, not quantization)."""
    from mobile_sdk.cli import main

    _, path, _ = coreml_packages[1]
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "quant palettize6 (6.00 bits: 6-bit 100.0%)" in text and "methods plan_0, plan_0__8x32x32, plan_1, plan_1__8x32x32\n" in text
    assert "parity: Core ML runs on macOS and devices only" in text
