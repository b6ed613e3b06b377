import json

import pytest

from mobile_sdk.errors import PlanError
from mobile_sdk.models import VideoUNet
from mobile_sdk.plan import TEMPORAL_OPS, StepPlans, TemporalPlan, load_plan_file, unet_slots


def test_slot_ids_are_stable_and_readable(tiny_config):
    ids = [s.id for s in unet_slots(tiny_config.unet)]
    assert ids == [
        "down0.res0", "down1.res0", "down1.attn0",
        "mid.res0", "mid.attn0", "mid.res1",
        "up1.res0", "up1.attn0", "up1.res1", "up1.attn1",
        "up0.res0", "up0.res1",
    ]


def test_unet_modules_follow_the_slot_list(tiny_config):
    unet = VideoUNet(tiny_config.unet, plan={"*": "conv1d"})
    assert [k.replace("_", ".") for k in unet.temporal.keys()] == [s.id for s in unet_slots(tiny_config.unet)]


def test_globs_then_exact_keys_and_default_none(tiny_config):
    plan = TemporalPlan.resolve({"up*": "conv1d", "up0.res1": "attn3d"}, tiny_config.unet)
    assert plan["up1.attn0"] == "conv1d"
    assert plan["up0.res1"] == "attn3d"
    assert plan["down0.res0"] == "none"
    assert len(plan) == len(unet_slots(tiny_config.unet))
    assert sum(plan.counts().values()) == len(plan)


def test_unknown_slot_is_named(tiny_config):
    with pytest.raises(PlanError, match="unknown slot 'down7.res0'.*down0.res0"):
        TemporalPlan.resolve({"down7.res0": "conv1d"}, tiny_config.unet, source="p.json")


def test_unknown_op_is_named(tiny_config):
    with pytest.raises(PlanError, match="unknown temporal op 'lstm' for slot 'mid.res0'"):
        TemporalPlan.resolve({"mid.res0": "lstm"}, tiny_config.unet)


def test_glob_matching_nothing_is_an_error(tiny_config):
    with pytest.raises(PlanError, match="pattern 'down5.\\*' matches no slot"):
        TemporalPlan.resolve({"down5.*": "conv1d"}, tiny_config.unet)


def test_plan_file_round_trip(tmp_path, tiny_config):
    plan = TemporalPlan.resolve({"*": "attn1d", "mid.attn0": "attn3d"}, tiny_config.unet)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(StepPlans.of(plan).to_file_dict(found_by="test")))
    assert TemporalPlan.resolve(load_plan_file(path)[0], tiny_config.unet) == plan
    path.write_text(json.dumps(StepPlans.of([plan, plan]).to_file_dict()))
    assert len(load_plan_file(path)) == 2


def test_bad_plan_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text('{"down0.res0": "conv1d"}')
    with pytest.raises(PlanError, match='plan.json: a plan file is a JSON object with a "slots"'):
        load_plan_file(path)
    path.write_text('{"steps": []}')
    with pytest.raises(PlanError, match='or a "steps" list'):
        load_plan_file(path)
    path.write_text("{not json")
    with pytest.raises(PlanError, match="plan.json: truncated or invalid JSON"):
        load_plan_file(path)


def test_ops_list_is_the_papers_candidates():
    assert TEMPORAL_OPS == ("none", "conv1d", "conv3d", "attn1d", "attn3d")


def test_plan_codes_round_trip(tiny_config):
    slots = [s.id for s in unet_slots(tiny_config.unet)]
    plan = TemporalPlan.resolve({"down0.*": "conv3d", "mid.attn0": "attn3d"}, tiny_config.unet)
    codes = plan.codes(slots)
    assert codes[slots.index("mid.attn0")] == TEMPORAL_OPS.index("attn3d")
    assert TemporalPlan.from_codes(slots, codes) == plan
