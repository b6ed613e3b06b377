"""The elastic supernet: (plan, SubNet) sub-networks on shared weights, their cost, and sandwich training."""
import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from export.lowering.parity import psnr
from export.nas.elastic import SubNet, subnet_config
from export.nas.model_blocks import model_blocks
from export.nas.sampling_space import AXES, ElasticSpace, parse_space
from export.nas.supernet import SupernetUNet, extract_model, load_supernet
from export.nas.supernet_train import (DynamicCostSampler, SupernetTrainConfig, elastic_space, temporal_flops,
                                       train_supernet)
from export.train.loop import TrainLoop
from mobile_sdk.errors import ConfigError
from mobile_sdk.models import VideoUNet
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.plan import TEMPORAL_OPS, unet_slots

WHOLE = ("temporal", "width", "depth", "resolution")
SMALL_RUN = dict(steps=3, batch_size=2, warmup_steps=1, pool_clips=4, held_out_clips=2, checkpoint_every=2,
                 random_per_step=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("elastic") / "base"
    VideoPipeline.from_preset("tiny", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(base):
    return VideoPipeline.from_pretrained(base)


@pytest.fixture(scope="module")
def elastic_dir(base, tmp_path_factory):
    """A width/depth supernet trained one step through the CLI (the sandwich without random members)."""
    from mobile_sdk.cli import main

    out = tmp_path_factory.mktemp("elastic") / "sn"
    assert main(["supernet", "train", "--model", str(base), "--out", str(out), "--space", "width,depth", "--steps", "1",
                 "--batch-size", "2", "--random-per-step", "0", "--warmup-steps", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def supernet(pipe):
    net = SupernetUNet.from_unet(pipe.unet)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.candidates.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def _args(cfg, hw=4, frames=2):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(1, cfg.in_channels, frames, hw, hw, generator=g), torch.tensor([0.6]),
            torch.randn(1, 6, cfg.cross_attention_dim, generator=g))


def _random_plan(net, rng):
    return rng.integers(0, len(TEMPORAL_OPS), len(net.slots)).astype(np.int8)


def test_forward_subnet_equals_the_extracted_model(supernet):
    cfg, rng = supernet.config, np.random.default_rng(0)
    subnets = [SubNet.full(cfg), SubNet.smallest(cfg)] + [SubNet.sample(cfg, random.Random(i)) for i in range(4)]
    for i, subnet in enumerate(subnets):
        codes = _random_plan(supernet, rng)
        args = _args(cfg, hw=8 if i % 2 else 4)  # any latent size runs
        with torch.no_grad():
            shared = supernet.forward_subnet(codes, subnet, *args)
            alone = supernet.extract_subnet(codes, subnet)(*args)
        assert psnr(alone, shared) >= 60, (codes, subnet)
    with torch.no_grad():  # the full sub-network is the supernet itself
        supernet.set_plan(codes)
        torch.testing.assert_close(supernet.forward_subnet(codes, SubNet.full(cfg), *args), supernet(*args))


def test_forward_subnet_trains_the_shared_weights_it_uses(supernet):
    cfg = supernet.config
    half = SubNet((0.5, 0.5), (2, 2), (1, 1), True)
    codes = np.full(len(supernet.slots), TEMPORAL_OPS.index("conv1d"), np.int8)
    supernet.zero_grad(set_to_none=True)
    supernet.forward_subnet(codes, half, *_args(cfg)).square().mean().backward()
    conv1 = supernet.down[0].res[0].conv1.weight  # level 0 at width 0.5: the first half of its outputs
    kept = cfg.res_inner(0) // 2
    assert conv1.grad[:kept].abs().sum() > 0 and conv1.grad[kept:].abs().sum() == 0
    used = [supernet.candidates[k] for k in supernet.candidates if k.endswith("__conv1d")]
    unused = [supernet.candidates[k] for k in supernet.candidates if not k.endswith("__conv1d")]
    assert all(p.grad is not None for m in used for p in m.parameters())
    assert all(p.grad is None for m in unused for p in m.parameters())
    supernet.zero_grad(set_to_none=True)


def _meta_flops(unet_cfg, input_shape, context_shape) -> float:
    with torch.device("meta"):
        unet = VideoUNet(unet_cfg)
        args = (torch.empty(input_shape), torch.empty(1), torch.empty(context_shape))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(*args)
    return float(counter.get_total_flops())


def test_cost_is_the_flops_of_the_whole_sub_network(pipe):
    space = elastic_space(pipe, ("temporal", "width", "depth"))
    rng = np.random.default_rng(1)
    vectors = [space.largest, space.smallest, *space.random(rng, 4)]
    for v in vectors:
        codes, subnet = space.decode(v)
        assert np.array_equal(space.encode(codes, subnet), v)
        cfg = dataclasses.replace(subnet_config(pipe.config.unet, subnet), temporal_plan={})
        kept = {slot.id for slot in unet_slots(cfg)}  # a dropped block's slot has no temporal layer
        cfg = dataclasses.replace(cfg, temporal_plan={s: op for s, op in space.plan(codes).items() if s in kept})
        assert space.cost_of(v) == pytest.approx(_meta_flops(cfg, space.input_shape, space.context_shape), rel=1e-9)
    assert space.decode(space.largest)[1] == SubNet.full(pipe.config.unet)
    assert space.decode(space.smallest)[1] == SubNet.smallest(pipe.config.unet)
    assert not space.decode(space.smallest)[0].any()


def test_axes_left_out_stay_at_the_base_model(pipe):
    base_codes = np.array(pipe.unet.plan.codes([s for s in SupernetUNet(pipe.config.unet).slots]))
    space = elastic_space(pipe, ("width",))
    for v in space.random(np.random.default_rng(2), 50):
        codes, subnet = space.decode(v)
        assert np.array_equal(codes, base_codes)
        assert subnet.up_blocks == SubNet.full(pipe.config.unet).up_blocks and subnet.mid_block
    assert {space.decode(v)[1].widths for v in space.random(np.random.default_rng(2), 50)} > {(1.0, 1.0)}


def test_sampler_buckets_the_whole_space_by_cost(pipe):
    space = elastic_space(pipe, ("temporal", "width", "depth"))
    sampler = DynamicCostSampler(space, buckets=4, warmup_steps=0, seed=0, pool=512)
    assert sampler.edges[-1] == pytest.approx(space.cost_of(space.largest))
    assert sampler.edges[0] == pytest.approx(space.cost_of(space.smallest)) and sampler.edges[0] > 0  # the backbone floor
    for b, pool in enumerate(sampler.pools):
        assert len(pool)
        costs = space.costs(pool)
        assert sampler.edges[b] - 1e-6 <= costs.min() and (costs.max() <= sampler.edges[b + 1] + 1e-6 or b == 3)
    # the cheapest bucket holds reduced widths/depths as well as dropped temporal layers
    assert any(space.decode(v)[1] != SubNet.full(pipe.config.unet) for v in sampler.pools[0])


def test_sandwich_step_trains_largest_smallest_and_sampled(base, tmp_path, monkeypatch):
    calls = []
    real = SupernetUNet.forward_subnet

    def spy(self, plan, subnet, *args):
        calls.append((np.array(plan), subnet, tuple(args[0].shape[-2:])))
        return real(self, plan, subnet, *args)

    monkeypatch.setattr(SupernetUNet, "forward_subnet", spy)
    cfg = SupernetTrainConfig(**{**SMALL_RUN, "steps": 1, "warmup_steps": 0, "random_per_step": 2},
                              space=("temporal", "width", "depth"))
    report = train_supernet(base, tmp_path / "sn", cfg, progress=False)
    pipe = VideoPipeline.from_pretrained(base)
    space = elastic_space(pipe, cfg.space)
    assert len(calls) == 4
    (lc, ls, _), (sc, ss, _) = calls[:2]
    assert np.array_equal(lc, space.decode(space.largest)[0]) and ls == SubNet.full(pipe.config.unet)
    assert not sc.any() and ss == SubNet.smallest(pipe.config.unet)
    assert set(report["final_losses"]) == {"loss", "largest", "smallest", "random"}
    assert sum(report["samples_per_bucket"].values()) == 2  # the sampled members only
    # the backbone trained (at its own rate), and the folder carries it
    weights = load_file(str(tmp_path / "sn" / "supernet.safetensors"))
    conv_in = pipe.unet.conv_in.weight
    assert not torch.equal(weights["conv_in.weight"], conv_in)
    net, _, meta = load_supernet(tmp_path / "sn")
    assert meta["backbone_trained"] and torch.equal(net.conv_in.weight, weights["conv_in.weight"])
    assert (tmp_path / "sn" / "loss.png").exists() and (tmp_path / "sn" / "sampling.png").exists()


def test_sandwich_targets_the_shipped_few_step_model_not_the_data_alone(base, tmp_path):
    """The largest sub-network starts as the shipped model: against its prediction (base_target_weight 1)
    the first loss is zero, against the data's many-step velocity (0) it is not; training on the data
    alone undid the demo model's 4-step distillation."""
    first = {}
    for weight in (1.0, 0.0):
        cfg = SupernetTrainConfig(**{**SMALL_RUN, "steps": 1, "warmup_steps": 0, "random_per_step": 0},
                                  space=("width", "depth"), base_target_weight=weight)
        report = train_supernet(base, tmp_path / f"sn{weight}", cfg, progress=False)
        first[weight] = report["final_losses"]["largest"]
        assert load_supernet(tmp_path / f"sn{weight}")[2]["training"]["config"]["base_target_weight"] == weight
    assert first[1.0] < 1e-10 < 0.01 < first[0.0]
    with pytest.raises(ConfigError, match="base_target_weight"):
        SupernetTrainConfig(base_target_weight=1.5).validate(VideoPipeline.from_pretrained(base).config)


def test_temporal_supernet_targets_the_shipped_model_too(base, pipe, tmp_path, monkeypatch):
    """The frozen-backbone supernet trains its plans towards the shipped model's prediction as the sandwich
    does: drawn as the shipped plan, the supernet is the shipped model, so its loss is zero against that
    target and not against the data's velocity."""
    shipped = np.array(pipe.unet.plan.codes(model_blocks(pipe.config).slots))
    monkeypatch.setattr(DynamicCostSampler, "sample", lambda self, step, rng: (shipped.copy(), -1))
    first = {}
    for weight in (1.0, 0.0):
        cfg = SupernetTrainConfig(**{**SMALL_RUN, "steps": 1}, base_target_weight=weight)
        first[weight] = train_supernet(base, tmp_path / f"sn{weight}", cfg, progress=False)["final_loss"]
    assert first[1.0] < 1e-10 < 0.01 < first[0.0]


def test_default_space_keeps_the_frozen_backbone_supernet(base, tmp_path):
    assert SupernetTrainConfig().space == ("temporal",) and not SupernetTrainConfig().elastic
    report = train_supernet(base, tmp_path / "sn", SupernetTrainConfig(**{**SMALL_RUN, "steps": 2}), progress=False)
    assert sum(report["samples_per_bucket"].values()) == 2  # one plan per step
    assert "final_losses" not in report
    net, pipe, meta = load_supernet(tmp_path / "sn")
    assert "backbone_trained" not in meta
    assert set(load_file(str(tmp_path / "sn" / "supernet.safetensors"))) == set(net.candidates.state_dict())
    assert torch.equal(net.conv_in.weight, pipe.unet.conv_in.weight)


def test_rank_check_over_temporal_plans(base, tmp_path):
    """The frozen-backbone path of rank-check: plans trained alone towards the same target, then ranked."""
    from export.nas.supernet_rank import rank_check

    train_supernet(base, tmp_path / "sn", SupernetTrainConfig(**{**SMALL_RUN, "steps": 2}), progress=False)
    report = rank_check(tmp_path / "sn", tmp_path / "rank", n_plans=3, steps=1, progress=False)
    assert report["plans"] == 3 and report["standalone_steps"] == 1 and report["supernet_steps"] == 2
    assert all(np.isfinite([r["supernet_loss"], r["standalone_loss"]]).all() for r in report["rows"])
    assert len({json.dumps(r["plan"], sort_keys=True) for r in report["rows"]}) == 3  # one plan per cost bucket
    assert -1 <= report["kendall_tau"] <= 1 and (tmp_path / "rank" / "rank.png").exists()


class Interrupt(Exception):
    pass


@pytest.mark.slow  # three short trainings at two resolutions: ~40 s here, more on a loaded machine
def test_resumed_sandwich_training_retraces_an_uninterrupted_one(base, tmp_path, monkeypatch):
    cfg = SupernetTrainConfig(**SMALL_RUN, space=WHOLE, resolutions=((16, 16), (32, 32)))
    torch.manual_seed(0)
    whole = train_supernet(base, tmp_path / "whole", cfg, progress=False)
    real = TrainLoop.generator

    def stop_at_2(self, k):
        if k == 2:
            raise Interrupt
        return real(self, k)

    monkeypatch.setattr(TrainLoop, "generator", stop_at_2)
    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        train_supernet(base, tmp_path / "part", cfg, progress=False)
    monkeypatch.setattr(TrainLoop, "generator", real)
    torch.manual_seed(1)  # other fresh candidates: the checkpoint must restore every weight
    resumed = train_supernet(base, tmp_path / "part", cfg, progress=False)
    state = [json.loads((tmp_path / run / "checkpoint" / "state.json").read_text())["state"] for run in ("whole", "part")]
    assert state[0]["history"] == state[1]["history"]
    assert state[0]["buckets"] == state[1]["buckets"] and state[0]["resolutions"] == state[1]["resolutions"]
    a, b = (load_file(str(tmp_path / run / "supernet.safetensors")) for run in ("whole", "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole["samples_per_resolution"] == resumed["samples_per_resolution"]
    assert sum(whole["samples_per_resolution"].values()) == 3
    # a checkpoint resumes only under its own space
    with pytest.raises(Exception, match="trained with --space temporal,width,depth,resolution"):
        train_supernet(base, tmp_path / "part", dataclasses.replace(cfg, space=("temporal",), resolutions=()),
                       progress=False)


def test_extract_writes_an_ordinary_smaller_model(elastic_dir, tmp_path):
    net, pipe, meta = load_supernet(elastic_dir)
    assert meta["training"]["config"]["space"] == ["width", "depth"] and meta["backbone_trained"]
    assert set(meta["training"]["final_losses"]) == {"loss", "largest", "smallest"}
    subnet = SubNet((0.5, 0.5), (1, 2), (1, 1), False)
    plan = {"*": "conv1d", "up0.*": "attn3d"}
    extract_model(elastic_dir, tmp_path / "model", plan, subnet, (48, 48))
    model = VideoPipeline.from_pretrained(tmp_path / "model")
    assert (model.config.height, model.config.width) == (48, 48)
    assert sum(p.numel() for p in model.unet.parameters()) < sum(p.numel() for p in pipe.unet.parameters())
    args = _args(net.config, hw=6)
    with torch.no_grad():
        assert psnr(net.forward_subnet(plan, subnet, *args), model.unet(*args)) >= 60
    with pytest.raises(ConfigError, match="--resolution"):
        extract_model(elastic_dir, tmp_path / "bad", plan, subnet, (40, 40))


def test_cli_supernet_options_and_errors(base, elastic_dir, tmp_path, capsys):
    from mobile_sdk.cli import main

    def error(argv) -> str:
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    train = ["supernet", "train", "--model", str(base), "--out", str(tmp_path / "sn")]
    assert "'colour'" in error(train + ["--space", "temporal,colour"])
    assert "no resolution axis" in error(train + ["--space", "width", "--resolutions", "32x32"])
    assert "HEIGHTxWIDTH" in error(train + ["--space", "resolution", "--resolutions", "big"])
    assert "multiples of 16" in error(train + ["--space", "resolution", "--resolutions", "40x40"])
    assert not (tmp_path / "sn").exists()  # refused before any work
    assert parse_space("resolution, temporal") == ("temporal", "resolution")
    with pytest.raises(ConfigError, match="choose from " + ", ".join(AXES)):
        parse_space("depth,size")

    subnet = tmp_path / "subnet.json"
    subnet.write_text(json.dumps({"widths": [0.75, 1.0], "up_blocks": [2, 1], "transformer_depths": [1, 1],
                                  "mid_block": True}))
    assert main(["supernet", "extract", "--supernet", str(elastic_dir), "--subnet", str(subnet),
                 "--out", str(tmp_path / "model")]) == 0
    assert VideoPipeline.from_pretrained(tmp_path / "model").unet.config.up_blocks == (2, 1)
    subnet.write_text(json.dumps({"widths": [0.25, 1.0], "up_blocks": [2, 1], "transformer_depths": [1, 1],
                                  "mid_block": True}))
    assert "widths[0] = 0.25 is not allowed" in error(["supernet", "extract", "--supernet", str(elastic_dir),
                                                       "--subnet", str(subnet), "--out", str(tmp_path / "m2")])


def test_elastic_space_rejects_nothing_it_emits(pipe):
    """Every vector the sampler can draw decodes to a SubNet the UNet accepts."""
    space = ElasticSpace(pipe.config.unet, ("temporal", "width", "depth"), temporal_flops(model_blocks(pipe.config)),
                         np.zeros(len(SupernetUNet(pipe.config.unet).slots)), pipe.config.num_frames, (4, 4),
                         pipe.config.text_encoder.max_length)
    for v in space.random(np.random.default_rng(0), 200):
        space.decode(v)[1].validate(pipe.config.unet)


def test_rank_check_over_sub_networks(elastic_dir, tmp_path):
    """Shared-weight loss vs extracted-and-fine-tuned loss, one sub-network per cost bucket."""
    from export.nas.supernet_rank import rank_check

    report = rank_check(elastic_dir, tmp_path / "rank", n_plans=3, steps=1, progress=False)
    assert report["subnets"] == 3 and report["standalone"] == "extracted, fine-tuned whole"
    rows = report["rows"]
    assert [r["flops"] for r in rows] == sorted(r["flops"] for r in rows)  # one per bucket, cheapest first
    assert all(np.isfinite([r["supernet_loss"], r["standalone_loss"]]).all() for r in rows)
    assert -1 <= report["kendall_tau"] <= 1 and (tmp_path / "rank" / "rank.png").exists()


def test_cli_step_aware_search_ranks_schedules_by_their_rollout(elastic_dir, pipe, tmp_path, capsys):
    from export.nas.latency_table import save_table
    from export.nas.model_blocks import elastic_blocks
    from mobile_sdk.cli import main
    from tests.test_latency_table import hand_table

    table = hand_table(elastic_blocks(pipe.config, [(pipe.config.height, pipe.config.width)]))
    c = pipe.config
    table.header.update(preset=c.name, resolution={"height": c.height, "width": c.width, "num_frames": c.num_frames})
    save_table(table, tmp_path / "table.json")
    out = tmp_path / "sched.json"
    assert main(["search", "--supernet", str(elastic_dir), "--space", "width,depth", "--table", str(tmp_path / "table.json"),
                 "--budget-ms", "1000", "--step-aware", "--population", "4", "--generations", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    search = json.loads(out.read_text())["search"]
    assert search["objective"].startswith("supernet 4-step rollout error vs the base model")
    assert "best uniform sub-network" in printed and len(search["steps"]) == 4
    assert search["loss"] <= search["best_uniform"]["loss"]


@pytest.mark.slow
def test_evaluate_schedules_measures_the_full_model_and_a_step_aware_schedule(elastic_dir, tmp_path, capsys):
    """`supernet evaluate`: the full model and a DDSM-shaped schedule (smallest sub-network on the noisy steps,
    full on the last two), each extracted, fine-tuned, exported and measured from its package."""
    from mobile_sdk.cli import main
    from mobile_sdk.package import open_package
    from tests.conftest import searched_plan

    cfg = load_supernet(elastic_dir)[1].config.unet
    plan = searched_plan(tmp_path / "ddsm.json", [SubNet.smallest(cfg)] * 2 + [SubNet.full(cfg)] * 2)
    assert main(["supernet", "evaluate", "--supernet", str(elastic_dir), "--plan", plan, "--finetune-steps", "2",
                 "--rounds", "1", "--out", str(tmp_path / "eval")]) == 0
    assert "wrote" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    full, ddsm = report["rows"]
    assert (full["label"], ddsm["label"], full["methods"], ddsm["methods"]) == ("full model", "ddsm", 1, 2)
    assert full["clips"] == ddsm["clips"] == 60 and full["flops_saved"] == 0
    manifest = open_package(tmp_path / "eval" / "ddsm.mobilepkg").manifest
    per_call = [manifest["unet_methods"][s["unet_method"]]["flops_per_call"] for s in manifest["steps"]]
    assert per_call[0] == per_call[1] < per_call[2] == per_call[3]
    assert ddsm["unet_gflops"] == pytest.approx(sum(per_call) / 1e9) and ddsm["unet_gflops"] < full["unet_gflops"]
    assert ddsm["flops_saved"] == pytest.approx(1 - ddsm["unet_gflops"] / full["unet_gflops"])
    assert all(r["denoise_ms_median"] > 0 and r["video_ms_median"] >= r["denoise_ms_median"] for r in report["rows"])
    assert "| ddsm | 2 |" in (tmp_path / "eval" / "report.md").read_text()
    assert (tmp_path / "eval" / "samples.png").stat().st_size > 0
