"""Palettization in PyTorch (export/lowering/palettization.py) and what Core ML stores of it."""
import numpy as np
import pytest
import torch
from torch import nn

from export.lowering.palettization import (
    BIT_CHOICES, PalettizationPlan, allocate_bits, apply_table, exact_table, lookup_tables, observing, palettized,
    plan_palettization, tables_and_errors,
)
from tests.conftest import observe_calls


def palettize(w, bits):
    return apply_table(w, lookup_tables(w, (bits,))[bits])


def test_lookup_tables_find_the_clusters_and_keep_to_their_size():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    values = centres[torch.randint(0, 4, (20000,), generator=g)] + 0.01 * torch.randn(20000, generator=g)
    table = lookup_tables(values, (2,))[2]
    assert torch.allclose(table, centres, atol=0.01)
    w = torch.randn(64, 32, 3, 3, generator=g)
    for bits in BIT_CHOICES:
        q = palettize(w, bits)
        assert q.shape == w.shape and torch.unique(q).numel() <= 1 << bits
        assert torch.equal(q, palettize(w, bits))  # deterministic: the same weights give the same package
    errors = [float((palettize(w, b) - w).square().mean()) for b in BIT_CHOICES]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3 < errors[0]
    # Lloyd's optimum for a Gaussian at 2 bits is about 0.1175 of the variance (Max's quantizer)
    assert errors[0] == pytest.approx(0.1175, rel=0.05)
    constant = torch.full((4096,), 0.25)
    assert torch.equal(palettize(constant, 4), constant)


def test_errors_weigh_each_input_channel_by_its_activations():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 32, 3, 3, generator=g)
    w[:, 0] *= 40  # one input channel far from the rest: the table spends its entries on it
    only_first = torch.zeros(32)
    only_first[0] = 1.0
    (tables, first), (_, rest) = tables_and_errors(w, only_first, BIT_CHOICES), tables_and_errors(w, 1 - only_first, BIT_CHOICES)
    _, plain = tables_and_errors(w, None, BIT_CHOICES)
    for b in BIT_CHOICES:
        d = (apply_table(w, tables[b]) - w).square()
        # from the histogram, as from every element (up to the bins straddling an entry boundary)
        assert first[b] == pytest.approx(float(d[:, 0].sum() / w[:, 0].square().sum()), rel=1e-3)
        assert rest[b] == pytest.approx(float(d[:, 1:].sum() / w[:, 1:].square().sum()), rel=1e-3)
        assert plain[b] == pytest.approx(float(d.sum() / w.square().sum()), rel=1e-3)
    assert first[2] < rest[2]


def test_bits_go_where_they_cost_the_least_error():
    sizes = {"big_easy": 1000, "small_hard": 100, "mid": 400}
    errors = {"big_easy": {b: 0.1 * 4.0 ** -b for b in BIT_CHOICES},
              "small_hard": {b: 100.0 * 4.0 ** -b for b in BIT_CHOICES},
              "mid": {b: 4.0 ** -b for b in BIT_CHOICES}}
    for average in (2.0, 3.0, 3.6, 4.5, 8.0):
        bits = allocate_bits(errors, sizes, average)
        assert sum(sizes[n] * b for n, b in bits.items()) <= average * sum(sizes.values())
        assert bits["big_easy"] <= bits["mid"] <= bits["small_hard"], (average, bits)
    assert set(allocate_bits(errors, sizes, 8.0).values()) == {8}
    assert set(allocate_bits(errors, sizes, 2.0).values()) == {2}
    bits = allocate_bits(errors, sizes, 3.6)
    assert bits["big_easy"] < bits["small_hard"]
    # never below the budget by more than one narrowing of the largest weight
    used = sum(sizes[n] * b for n, b in bits.items())
    assert used > 3.6 * sum(sizes.values()) - sizes["big_easy"] * 2


def test_a_plan_palettizes_during_the_block_only_and_counts_each_shared_weight_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64), nn.LayerNorm(64))
    x = torch.randn(32, 64)
    before = [p.detach().clone() for p in model.parameters()]
    seen = observe_calls([(model, (x,)), (model, (x,))])
    plan = plan_palettization([model, model], seen, "palettize-mixed3", BIT_CHOICES)
    assert set(plan.bits) == {"0.weight", "2.weight"}  # > 2048 elements; biases and the norm stay fp16
    assert plan.average_bits <= 3.0
    summary = plan.summary()
    assert sum(summary["elements_by_bits"].values()) == 2 * 64 * 128 and summary["weights"] == 2
    with palettized(plan):
        for name, p in model.named_parameters():
            if name in plan.bits:
                assert torch.unique(p).numel() <= 1 << plan.bits[name]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    uniform = plan_palettization([model], seen, "palettize6")
    assert set(uniform.bits.values()) == {6}


def test_observing_sees_the_blocks_calls_and_each_shared_layer_once():
    """The export plans from its test vectors' own calls: what they used, each input channel's mean square."""
    torch.manual_seed(0)
    shared, unused = nn.Linear(64, 64), nn.Linear(64, 64)
    a = nn.ModuleDict({"layer": shared, "unused": unused})
    b = nn.Sequential(shared, nn.Linear(64, 64))
    x1, x2 = torch.randn(8, 64), 3 * torch.randn(8, 64)
    with observing([a, b]) as seen, torch.no_grad():
        shared(x1)
        b(x2)
    shared(x1)  # after the block: not observed
    assert id(shared) in seen.used and id(unused) not in seen.used and id(b[1]) in seen.used
    assert seen.sums[id(shared.weight)][1] == 2
    assert torch.allclose(seen.moments()[id(shared.weight)], (x1.square().mean(0) + x2.square().mean(0)) / 2)
    plan = plan_palettization([a, b], seen, "palettize4")
    assert set(plan.bits) == {"layer.weight", "1.1.weight"}  # the unused layer's weight is left out


def test_exact_tables_hold_the_values_at_the_fewest_bits():
    rng = np.random.default_rng(0)
    values = rng.choice(np.array([-1.5, -0.25, 0.125, 3.0, 7.5], dtype=np.float16), size=9216)
    table, index = exact_table(values, BIT_CHOICES)
    assert table.size == 8 and table.dtype == np.float16 and index.dtype == np.uint8
    assert np.array_equal(table[index], values.ravel())
    assert exact_table(values, (2, 4, 6, 8))[0].size == 16  # iOS 17 has no 3-bit tables
    assert exact_table(np.full(4096, 0.5, dtype=np.float16), BIT_CHOICES)[0].size == 2
    assert exact_table(rng.standard_normal(4096).astype(np.float16), BIT_CHOICES) is None  # > 256 values


def test_core_ml_stores_the_palettized_weights_exactly(tiny_pipe):
    """The converted UNet holds each planned weight as a table of its planned width whose values are the
    PyTorch palettized weight in fp16: what --check runs is what the package holds."""
    from export.lowering.coreml import CoreMLOptions, compress, convert
    from export.lowering.package_writer import IO_NAMES, _entries, package_sizes

    tiny_pipe.scheduler.set_timesteps(tiny_pipe.config.scheduler.num_inference_steps)
    e = _entries(tiny_pipe, package_sizes(tiny_pipe.config, []))["unet"][0]
    seen = observe_calls([(e.module, e.example)])
    plan = plan_palettization([e.module], seen, "palettize-mixed3.5", BIT_CHOICES)
    assert len(set(plan.bits.values())) > 1
    weights = dict(e.module.named_parameters())
    with palettized(plan):
        expected = {name: weights[name].detach().half().numpy() for name in plan.bits}
        model = convert(e.module, e.example, *IO_NAMES["unet"], CoreMLOptions(deployment_target="iOS18"), {})
    compressed = compress(model, "palettize-mixed3.5", BIT_CHOICES)
    tables = {op.name: op for op in compressed._mil_program.functions["main"].operations
              if op.op_type == "constexpr_lut_to_dense"}
    # all-zero weights (the tiny model's zero-initialised temporal taps) are folded or de-duplicated
    planned = [n for n in plan.bits if np.unique(expected[n].astype(np.float32)).size > 1]
    assert len(planned) >= 0.75 * len(plan.bits)
    for name in planned:
        op = tables[name.replace(".", "_") + "_to_fp16_palettized"]
        lut, index = op.lut.val.ravel(), op.indices.val
        assert lut.size <= 1 << plan.bits[name], name
        assert np.array_equal(lut[index.astype(np.int64)], expected[name]), name


def test_mixed_bits_cost_less_error_than_uniform_bits_of_the_same_size():
    """The allocation on a real model: at the average of uniform 4-bit minus a bit, mixed bits keep the
    summed error below the uniform 3-bit plan's (the narrowing goes where it costs the least)."""
    from mobile_sdk.pipeline import VideoPipeline
    from mobile_sdk.weights import default_model_dir

    pipe = VideoPipeline.from_pretrained(default_model_dir())
    decoder = pipe.vae_decoder
    example = (torch.randn(1, pipe.config.vae.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0)),)
    seen = observe_calls([(decoder, example)])
    mixed = plan_palettization([decoder], seen, "palettize-mixed3", BIT_CHOICES)
    uniform = PalettizationPlan({n: 3 for n in mixed.bits}, mixed.sizes, "palettize3", mixed.weights,
                                {n: lookup_tables(p, (3,))[3] for n, p in mixed.weights.items()})
    assert mixed.average_bits <= 3.0 and len(set(mixed.bits.values())) > 1

    def frames_db(plan):
        from export.lowering.parity import psnr
        with torch.no_grad():
            want = decoder(*example)
            with palettized(plan):
                return psnr(want, decoder(*example))

    assert frames_db(mixed) > frames_db(uniform)


@pytest.mark.parametrize("argv, message", [
    (["--quantize", "palettize4"], "palettize4 compresses the Core ML models, and this export writes none"),
    (["--target", "coreml", "--quantize", "int8"], "int8 quantizes the ExecuTorch programs, and this export writes none"),
    (["--target", "coreml", "--quantize", "palettize-mixed9"], "palettize-mixed9: the average must lie between 2 and 8"),
    (["--target", "coreml", "--quantize", "palettize5"], "unknown quantization 'palettize5'"),
])
def test_export_refuses_a_compression_it_would_not_apply(tmp_path, capsys, argv, message):
    """Before any work (int8 calibration runs pipelines): an error naming the mode, nothing written."""
    from mobile_sdk.cli import main

    out = tmp_path / "x.mobilepkg"
    assert main(["export", "--preset", "tiny", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_palettized_package_records_its_bits_and_its_check(coreml_packages, tmp_path):
    """--check of a Core ML palettized export runs the palettized weights in PyTorch against fp32 (every
    entry, the step-aware UNet's four included) and refuses a package below the gate (the tiny random
    model at 2 bits)."""
    from export.lowering.package_writer import ParityError, export_package
    from mobile_sdk.pipeline import VideoPipeline

    _, _, manifest = coreml_packages[1]
    check = manifest["targets"]["coreml"]["palettization_check"]
    assert check["passed"] and check["pipeline_frames_db"] >= 30.0
    assert set(check["components"]) == set(manifest["test_vectors"]) - {"noise", "pipeline"}
    assert all(db < 200 for db in check["components"].values())  # the weights really changed
    unet = manifest["targets"]["coreml"]["components"]["unet"]
    assert unet["palettization"]["elements_by_bits"].keys() == {"6"} and unet["bytes"] < unet["fp16_bytes"]
    with pytest.raises(ParityError, match="palettization check failed: frames"):
        export_package(VideoPipeline.from_preset("tiny", seed=0), tmp_path / "p2.mobilepkg", targets=("coreml",),
                       quantize="palettize-mixed2", check=True, log=lambda s: None)
    assert not (tmp_path / "p2.mobilepkg").exists()
