"""Elastic UNet: sub-networks over width and depth are exact slices of the full model, and ordinary models."""
import dataclasses
import math
import json
import random

import pytest
import torch

from export.lowering.executorch import MethodSpec, lower_program
from export.lowering.parity import psnr
from export.nas.elastic import SubNet, all_subnets, elastic_forward, extract, subnet_config
from mobile_sdk.config import load_preset
from mobile_sdk.errors import ConfigError
from mobile_sdk.models import VideoUNet
from mobile_sdk.plan import slot_id

from .conftest import randomize_temporal

ARGS_SEED = 5


def _tiny(**overrides):
    cfg = dataclasses.replace(load_preset("tiny").unet, **overrides)
    cfg.validate("test")
    torch.manual_seed(0)
    unet = VideoUNet(cfg).eval()
    randomize_temporal(unet)
    return unet


@pytest.fixture(scope="module")
def tiny_unet():
    return _tiny()


# Two blocks per down stage, two transformer blocks and GEGLU: deeper up stages and transformer depth to choose.
@pytest.fixture(scope="module")
def deep_unet():
    return _tiny(layers_per_block=2, transformer_depth=2, ff_activation="geglu")


def _args(cfg, frames=2):
    g = torch.Generator().manual_seed(ARGS_SEED)
    return (torch.randn(1, cfg.in_channels, frames, 8, 8, generator=g), torch.tensor([0.4]),
            torch.randn(1, 6, cfg.cross_attention_dim, generator=g))


def masked_reference(unet, subnet, args):
    """What a sub-network means, computed without slicing: the full model with the dropped inner channels and
    heads zeroed and the dropped blocks turned into the identity (forward hooks)."""
    last = len(unet.config.block_channels) - 1
    handles = []

    def zero_from(k):
        def hook(module, inputs, output):
            out = output.clone()
            dim = 1 if out.dim() == 4 else -1  # conv feature maps: channels; tokens: the last dim
            out.narrow(dim, k, out.shape[dim] - k).zero_()
            return out
        return hook

    def zero_input_from(k):
        def hook(module, inputs):
            x = inputs[0].clone()
            x[..., k:] = 0
            return (x,)
        return hook

    def identity(module, inputs, output):
        return inputs[0]

    def drop_up_block(module, inputs, output):
        return inputs[0][:, : output.shape[1]]  # the x of cat([x, skip])

    def temporal(stage, j, has_attn):
        kinds = ("res", "attn") if has_attn else ("res",)
        return [m for m in (unet.temporal_layer(slot_id(stage, kind, j)) for kind in kinds) if m is not None]

    for level, width in enumerate(subnet.widths):
        stages = [unet.down[level], unet.up[level]] + ([unet.mid] if level == last else [])
        for stage in stages:
            for res in stage.res:
                handles.append(res.norm2.register_forward_hook(zero_from(int(res.norm2.num_channels * width))))
            for attn in stage.attn:
                for block in attn.blocks:
                    for a in (block.attn1, block.attn2):
                        kept = math.ceil(a.heads * width) * a.head_dim  # heads are never split
                        handles.append(a.to_out.register_forward_pre_hook(zero_input_from(kept)))
                    handles.append(block.ff.fc1.register_forward_hook(zero_from(int(block.ff.fc1.out_features * width))))
                for block in attn.blocks[subnet.transformer_depths[level]:]:
                    handles.append(block.register_forward_hook(identity))
        up = unet.up[level]
        for j in range(subnet.up_blocks[level], len(up.res)):
            handles.append(up.res[j].register_forward_hook(drop_up_block))
            dropped = ([up.attn[j]] if len(up.attn) else []) + temporal(f"up{level}", j, len(up.attn) > 0)
            handles += [m.register_forward_hook(identity) for m in dropped]
    if len(unet.mid.res) and not subnet.mid_block:
        dropped = [*unet.mid.res, *unet.mid.attn, *temporal("mid", 0, True), *temporal("mid", 1, False)]
        handles += [m.register_forward_hook(identity) for m in dropped]
    try:
        with torch.no_grad():
            return unet(*args)
    finally:
        for h in handles:
            h.remove()


def _choices(cfg, n_random):
    rng = random.Random(1)
    return [SubNet.smallest(cfg), SubNet.full(cfg)] + [SubNet.sample(cfg, rng) for _ in range(n_random)]


@pytest.mark.parametrize("which", ["tiny_unet", "deep_unet"])
def test_extracted_model_equals_the_masked_full_model(which, request):
    unet = request.getfixturevalue(which)
    args = _args(unet.config)
    with torch.no_grad():
        full_out = unet(*args)
    for subnet in _choices(unet.config, 4):
        reference = masked_reference(unet, subnet, args)
        with torch.no_grad():
            out = extract(unet, subnet)(*args)
        assert psnr(reference, out) >= 100.0, subnet
        if subnet != SubNet.full(unet.config):  # the hooks did something: a sub-network is another function
            assert psnr(full_out, reference) < 40.0, subnet


def test_full_choice_is_the_unchanged_model(tiny_unet):
    sub = extract(tiny_unet, SubNet.full(tiny_unet.config))
    assert sub.config == tiny_unet.config
    own, full = sub.state_dict(), tiny_unet.state_dict()
    assert own.keys() == full.keys() and all(torch.equal(own[k], full[k]) for k in own)
    args = _args(tiny_unet.config)
    with torch.no_grad():
        assert torch.equal(sub(*args), tiny_unet(*args))


def test_elastic_forward_runs_the_sub_network_on_shared_weights(deep_unet):
    args = _args(deep_unet.config)
    subnet = SubNet.sample(deep_unet.config, random.Random(3))
    with torch.no_grad():
        torch.testing.assert_close(elastic_forward(deep_unet, subnet, *args), extract(deep_unet, subnet)(*args),
                                   atol=1e-6, rtol=1e-6)
    smallest = SubNet.smallest(deep_unet.config)
    deep_unet.zero_grad()
    elastic_forward(deep_unet, smallest, *args).square().mean().backward()
    conv1 = deep_unet.down[0].res[0].conv1.weight  # width 0.5 of 16 inner channels: the first 8 rows are used
    assert conv1.grad[:8].abs().sum() > 0 and torch.all(conv1.grad[8:] == 0)
    assert deep_unet.mid.res[0].conv1.weight.grad is None  # the middle block did not run
    deep_unet.zero_grad(set_to_none=True)


def test_extracted_tensors_are_smaller(tiny_unet):
    smallest = extract(tiny_unet, SubNet.smallest(tiny_unet.config))
    assert smallest.down[0].res[0].conv1.weight.shape == (8, 16, 3, 3)  # 16 inner channels at width 0.5
    assert smallest.down[0].res[0].norm2.num_groups == 2  # group size 4 kept
    assert smallest.down[0].res[0].conv2.weight.shape == (16, 8, 3, 3)  # outer channels stay
    block = smallest.down[1].attn[0].blocks[0]
    assert block.attn1.heads == 1 and block.attn1.to_q.weight.shape == (16, 32)  # one of two 16-wide heads
    assert block.attn2.to_k.weight.shape == (16, 32) and block.attn2.to_out.weight.shape == (32, 16)
    assert block.ff.fc1.weight.shape == (32, 32)  # hidden 32 * ff_mult 2, halved
    assert [len(s.res) for s in smallest.up] == [1, 1] and len(smallest.mid.res) == 0
    assert not any(k.startswith(("mid.", "temporal.mid_", "temporal.up0_res1", "temporal.up1_res1"))
                   for k in smallest.state_dict())

    # Width 0.5 at level 0 only: each of its ResBlocks loses 8 inner channels of conv1, time_proj, norm2, conv2.
    half0 = SubNet((0.5, 1.0), (2, 2), (1, 1), True)
    expected = 0
    for res in (tiny_unet.down[0].res[0], *tiny_unet.up[0].res):
        dropped, c_in, temb = 8, res.norm1.num_channels, res.time_proj.in_features
        expected += dropped * (c_in * 9 + 1) + dropped * (temb + 1) + 2 * dropped + 16 * dropped * 9
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tiny_unet) - count(extract(tiny_unet, half0)) == expected
    assert count(smallest) < count(tiny_unet) / 2


def test_extracted_model_is_an_ordinary_model_folder(tiny_unet, tmp_path):
    subnet = SubNet((0.75, 0.5), (1, 2), (1, 1), False)
    sub = extract(tiny_unet, subnet)
    sub.save_pretrained(tmp_path / "unet")
    saved = json.loads((tmp_path / "unet/config.json").read_text())
    assert saved["res_inner_channels"] == [12, 16] and saved["up_blocks"] == [1, 2] and saved["mid_block"] is False
    loaded = VideoUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config == sub.config and loaded.plan == sub.plan
    args = _args(tiny_unet.config)
    with torch.no_grad():
        assert torch.equal(loaded(*args), sub(*args))


def test_every_choice_builds_with_consistent_slots(tiny_unet):
    cfg = tiny_unet.config
    subnets = list(all_subnets(cfg))
    # widths: 3 at each level (level 1's two heads: both kept at 0.75); up blocks 2 x 2; mid on/off
    assert len(subnets) == 3 * 3 * 2 * 2 * 2 and len(set(subnets)) == len(subnets)
    for subnet in subnets:
        sub_cfg = subnet_config(cfg, subnet)
        assert set(sub_cfg.temporal_plan) <= set(cfg.temporal_plan)
        with torch.device("meta"):
            VideoUNet(sub_cfg)  # builds, and its plan resolves against its own slots


def _block_choices(s: SubNet) -> set[tuple]:
    """What decides how each operator of a sub-network lowers: a block's shapes depend only on its own level's
    width and transformer depth (outer channels never shrink), which blocks exist on the level's up blocks,
    and the deepest up stage's first join (x with itself without a middle block) on the middle block with the
    last level's choices."""
    last = len(s.widths) - 1
    per_level = {(level, s.widths[level], s.up_blocks[level], s.transformer_depths[level]) for level in range(last + 1)}
    return per_level | {("mid", s.mid_block, s.widths[last], s.up_blocks[last], s.transformer_depths[last])}


def covering_subnets(cfg) -> list[SubNet]:
    """Full, smallest, then greedily the sub-network with the most block choices not yet covered, until every
    block choice of every sub-network the search may emit (all_subnets) is in one."""
    every = list(all_subnets(cfg))
    chosen = [SubNet.full(cfg), SubNet.smallest(cfg)]
    missing = set().union(*map(_block_choices, every)) - set().union(*map(_block_choices, chosen))
    while missing:
        best = max(every, key=lambda s: len(_block_choices(s) & missing))
        chosen.append(best)
        missing -= _block_choices(best)
    return chosen


def test_covering_subnets_hold_every_block_choice_in_few_networks(tiny_unet):
    cfg = tiny_unet.config
    cover = covering_subnets(cfg)
    assert set().union(*map(_block_choices, cover)) == set().union(*map(_block_choices, all_subnets(cfg)))
    assert len(cover) == len(set(cover)) <= 12 < len(list(all_subnets(cfg))) == 72


# Lowering takes ~25 s per tiny UNet here, so all 72 sub-networks (30 min) are stood for by the few that hold
# every block choice of them (covering_subnets), as methods of one program with the tiny preset's plan.
@pytest.mark.slow
def test_every_block_choice_of_the_search_space_lowers_fully_to_xnnpack(tiny_unet):
    cfg = tiny_unet.config
    subnets = covering_subnets(cfg)
    args = _args(cfg)
    methods = {f"s{i}": MethodSpec(extract(tiny_unet, s), args, ["sample", "timestep", "encoder_hidden_states"],
                                   ["velocity"]) for i, s in enumerate(subnets)}
    delegation = lower_program(methods, log=lambda s: None).delegation
    for (name, report), subnet in zip(delegation.items(), subnets):
        assert report["flop_fraction_delegated"] == 1.0 and report["ops_outside_by_type"] == {}, (subnet, report)
    assert delegation["s1"]["flops_total"] < delegation["s0"]["flops_total"]  # the smallest against the full


def test_json_round_trip(deep_unet):
    subnet = SubNet.sample(deep_unet.config, random.Random(7))
    again = SubNet.from_dict(json.loads(json.dumps(subnet.to_dict())))
    assert again == subnet
    again.validate(deep_unet.config)
    assert SubNet.from_dict({"widths": [1, 0.5], "up_blocks": [3, 1], "transformer_depths": [2, 1],
                             "mid_block": True}).widths == (1.0, 0.5)


@pytest.mark.parametrize("change, message", [
    ({"widths": (1.0,)}, "widths has 1 entries; the UNet has 2 resolution levels"),
    ({"widths": (1.0, 0.6)}, r"widths\[1\] = 0.6 is not allowed; choose from \[1.0, 0.75, 0.5\].*whole GroupNorm "
                             r"groups of 8 channels and whole units of the 64-unit feed-forward"),
    ({"widths": (0.3, 1.0)}, r"widths\[0\] = 0.3 is not allowed"),
    ({"up_blocks": (0, 2)}, r"up_blocks\[0\] = 0 is not allowed; choose from \[1, 2\].*first block"),
    ({"up_blocks": (2, 3)}, r"up_blocks\[1\] = 3 is not allowed"),
    ({"up_blocks": (2.0, 2)}, r"up_blocks\[0\] = 2.0 is not allowed"),
    ({"transformer_depths": (1, 2)}, r"transformer_depths\[1\] = 2 is not allowed; choose from \[1\]"),
])
def test_invalid_choices_are_named(tiny_unet, change, message):
    subnet = dataclasses.replace(SubNet.full(tiny_unet.config), **change)
    with pytest.raises(ConfigError, match=message):
        extract(tiny_unet, subnet)


def test_invalid_choices_without_a_mid_block_or_from_json():
    unet = _tiny(mid_block=False, temporal_plan={"*": "conv1d"})
    with pytest.raises(ConfigError, match="no middle block"):
        SubNet((1.0, 1.0), (2, 2), (1, 1), True).validate(unet.config)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['depth'\]"):
        SubNet.from_dict({"widths": [1.0], "depth": 1})
    with pytest.raises(ConfigError, match="missing 1 required positional argument: 'mid_block'"):
        SubNet.from_dict({"widths": [1.0], "up_blocks": [1], "transformer_depths": [1]})
    with pytest.raises(ConfigError, match="widths: expected a number"):
        SubNet.from_dict({"widths": ["half"], "up_blocks": [1], "transformer_depths": [1], "mid_block": True})
    with pytest.raises(TypeError, match="plain VideoUNet"):
        from mobile_sdk.models.step_aware import StepAwareUNet
        extract(StepAwareUNet.from_plans(unet, [{}, {"*": "conv1d"}]), SubNet.full(unet.config))


@pytest.mark.parametrize("overrides, message", [
    ({"res_inner_channels": (6, 32)}, r"res_inner_channels\[0\] = 6 is not a multiple of the group size 4"),
    ({"attention_inner_channels": (16, 24)}, r"attention_inner_channels\[1\] = 24 is not a whole number of heads of size 16"),
    ({"up_blocks": (3, 2)}, r"up_blocks\[0\] = 3, but an up stage has only 2 skips"),
    ({"ff_inner_channels": (32,)}, "ff_inner_channels has 1 entries"),
    ({"transformer_depths": (1, 0)}, "transformer_depths must be positive"),
])
def test_config_rejects_invalid_inner_sizes(overrides, message):
    cfg = dataclasses.replace(load_preset("tiny").unet, **overrides)
    with pytest.raises(ConfigError, match=message):
        cfg.validate("test")
