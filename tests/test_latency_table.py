import json
import math
from dataclasses import replace

import numpy as np
import pytest

from export.nas.latency_table import LatencyTable, TableEntry, TableError, load_table, save_table
from export.nas.model_blocks import CALL_SIGNATURE, model_blocks
from export.nas.efficiency_predictor import LatencyPredictor
from mobile_sdk.config import load_preset
from mobile_sdk.plan import TEMPORAL_OPS, TemporalPlan


def _header(**over):
    h = {"device": {"model": "test"}, "runtime": {"name": "executorch", "version": "x"}, "compute_unit": "cpu",
         "threads": 1, "sdk_version": "0", "date": "2026-11-23", "measurement": {"warmup": 0, "runs": 1},
         "provenance": {"kind": "estimated", "method": "hand-made for tests"}, "preset": "tiny", "quantize": "none",
         "resolution": {"height": 32, "width": 32, "num_frames": 4}, "status": "complete"}
    h.update(over)
    return h


def _entry(ms: float, weights: int = 0, peak: int = 0) -> TableEntry:
    return TableEntry(count=1, mean_ms=ms, p10_ms=ms, p50_ms=ms, p90_ms=ms, peak_memory_bytes=peak, weight_bytes=weights)


def hand_table(blocks, call_ms: float = 0.5) -> LatencyTable:
    """Distinct, known latencies and sizes for every signature the model needs."""
    entries = {}
    for i, sig in enumerate(sorted(blocks.signatures())):
        entries[sig] = _entry(1.0 + i * 0.37, weights=1000 * (i + 1), peak=5000 * (i + 1) + 10_000)
    entries[CALL_SIGNATURE] = _entry(call_ms, peak=10_000)
    return LatencyTable(header=_header(), entries=entries)


@pytest.fixture(scope="module")
def tiny_blocks():
    return model_blocks(load_preset("tiny"))


def test_round_trip(tmp_path, tiny_blocks):
    table = hand_table(tiny_blocks)
    path = save_table(table, tmp_path / "t.json")
    back = load_table(path)
    assert back.entries == table.entries and back.header == table.header
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left behind


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["entries"][next(iter(d["entries"]))].update(mean_ms=-1.0), "finite number >= 0"),
    (lambda d: d["entries"][next(iter(d["entries"]))].update(p90_ms=float("nan")), "finite number >= 0"),
    (lambda d: d["entries"][next(iter(d["entries"]))].pop("p50_ms"), "lacks p50_ms"),
    (lambda d: d["entries"][next(iter(d["entries"]))].update(p10_ms=99.0), "percentiles out of order"),
    (lambda d: d["header"].pop("device"), "header lacks device"),
    (lambda d: d["header"]["provenance"].pop("method"), "must say its method"),
    (lambda d: d["header"]["provenance"].update(kind="guessed"), "provenance.kind"),
    (lambda d: d.update(schema_version=7), "unsupported schema_version 7"),
    (lambda d: d.update(format="other"), "not a latency table"),
])
def test_validation_errors_name_file_and_field(tmp_path, tiny_blocks, mutate, message):
    data = hand_table(tiny_blocks).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data).replace("NaN", "NaN"))
    with pytest.raises(TableError, match=message) as e:
        load_table(path)
    assert str(path) in str(e.value)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"format": "mobile-sdk-latency-table", "entr')
    with pytest.raises(TableError, match="truncated or invalid JSON"):
        load_table(path)


def _expected_unet_call(table, blocks, plan) -> float:
    """Straight from the documented model, entry by entry."""
    e, call = table.entries, table.entries[CALL_SIGNATURE].mean_ms
    return call + sum(n * (e[s].mean_ms - call) for s, n in blocks.uses(plan).items())


def test_predictor_equals_sum_of_entries(tiny_blocks):
    table = hand_table(tiny_blocks)
    pred = LatencyPredictor(table, tiny_blocks)
    rng = np.random.default_rng(0)
    plans = [{s: TEMPORAL_OPS[rng.integers(5)] for s in tiny_blocks.slots} for _ in range(4)]
    p = pred.predict(plans)  # step-aware: one plan per step
    steps = [_expected_unet_call(table, tiny_blocks, plan) for plan in plans]
    assert p.unet_step_ms == pytest.approx(steps)
    e = table.entries
    expected = e[tiny_blocks.text_encoder].mean_ms + sum(steps) + tiny_blocks.decoder_calls * e[tiny_blocks.vae_decoder].mean_ms
    assert p.end_to_end_ms == pytest.approx(expected)
    # The vectorised path agrees with the one-plan path on many plans at once.
    codes = rng.integers(0, 5, size=(64, 4, len(tiny_blocks.slots))).astype(np.int8)
    batch = pred.denoise_ms(codes)
    for k in range(3):
        specs = [{s: TEMPORAL_OPS[c] for s, c in zip(tiny_blocks.slots, codes[k, i])} for i in range(4)]
        assert batch[k] == pytest.approx(sum(_expected_unet_call(table, tiny_blocks, sp) for sp in specs))


def test_memory_counts_shared_temporal_weights_once(tiny_blocks):
    table = hand_table(tiny_blocks)
    pred = LatencyPredictor(table, tiny_blocks)
    plan = {"down0.*": "conv3d"}
    one = pred.predict(plan).peak_memory_bytes
    same_each_step = pred.predict([plan] * 4).peak_memory_bytes
    assert one == same_each_step
    mixed = pred.predict([plan, {"down0.*": "attn1d"}, plan, plan]).peak_memory_bytes
    sig = tiny_blocks.temporal["down0.res0"]["attn1d"]
    assert mixed >= one + table.entries[sig].weight_bytes


def test_guidance_doubles_unet_calls(tiny_blocks):
    cfg = load_preset("tiny")
    guided = model_blocks(replace(cfg, guidance_scale=3.0))
    table = hand_table(tiny_blocks)
    plain = LatencyPredictor(table, tiny_blocks).predict({}).denoise_ms
    assert LatencyPredictor(table, guided).predict({}).denoise_ms == pytest.approx(2 * plain)


def test_missing_entries_are_listed(tiny_blocks):
    table = hand_table(tiny_blocks)
    gone = tiny_blocks.temporal["mid.attn0"]["attn3d"]
    del table.entries[gone]
    pred = LatencyPredictor(table, tiny_blocks, source="t.json")  # fine until a plan needs it
    pred.predict({"mid.attn0": "conv1d"})
    with pytest.raises(TableError, match="t.json.*1 signature") as e:
        pred.predict({"mid.attn0": "attn3d"})
    assert gone in str(e.value)
    del table.entries[tiny_blocks.text_encoder]
    with pytest.raises(TableError, match="text_encoder"):
        LatencyPredictor(table, tiny_blocks)


def test_signatures_cover_every_slot_and_op(tiny_blocks):
    plan = TemporalPlan.resolve({}, tiny_blocks.config.unet)
    assert set(tiny_blocks.temporal) == set(plan)
    for ops in tiny_blocks.temporal.values():
        assert set(ops) == set(TEMPORAL_OPS[1:])
    # same shape and op in two slots -> one entry used twice
    uses = tiny_blocks.uses({"*": "conv1d"})
    assert max(uses.values()) > 1
    assert all(not math.isnan(v) for v in uses.values())


def test_predictions_read_the_statistic_the_calibration_was_fitted_on(tiny_blocks):
    """A calibration fitted on p10 (profile calibrate's default) makes predictions read p10 and scale
    them; predictions on another statistic are not scaled by it."""
    table = hand_table(tiny_blocks)
    table.entries = {s: replace(e, p10_ms=e.mean_ms / 2) for s, e in table.entries.items()}
    plain = LatencyPredictor(table, tiny_blocks).predict({}).unet_step_ms[0]
    table.header["calibration"] = {"unet_call_scale": 1.5, "statistic": "p10_ms"}
    pred = LatencyPredictor(table, tiny_blocks)
    assert pred.statistic == "p10_ms" and pred.predict({}).unet_step_ms[0] == pytest.approx(1.5 * plain / 2)
    on_mean = LatencyPredictor(table, tiny_blocks, statistic="mean_ms")
    assert not on_mean.calibrated and on_mean.predict({}).unet_step_ms[0] == pytest.approx(plain)
