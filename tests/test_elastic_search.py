"""The search over the whole space {temporal plan, sub-network (width, depth), resolution}: shared table
entries, the predictor, genomes, the shared-weight objective, step-aware seeding and the CLI's errors."""
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.nas.accuracy_predictor import ElasticEvaluator, RolloutEvaluator
from export.nas.efficiency_predictor import ElasticPredictor
from export.nas.elastic import SubNet, all_subnets, subnet_config, subnet_of
from export.nas.genome import GenomeSpace, parse_space
from export.nas.latency_table import TableError, save_table
from export.nas.model_blocks import CALL_SIGNATURE, elastic_blocks, model_blocks
from export.nas.search_algorithm import (ElasticConstraint, SearchConfig, SearchError, evolutionary_search,
                                         exhaustive_search)
from mobile_sdk.cli import main as cli_main
from mobile_sdk.config import load_preset
from mobile_sdk.errors import ConfigError, SDKError
from mobile_sdk.models import VideoUNet
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.scheduler import RectifiedFlowScheduler
from tests.conftest import searched_plan
from tests.test_latency_table import hand_table

RESOLUTIONS = [(32, 32), (64, 64)]


@pytest.fixture(scope="module")
def config():
    """tiny with two blocks per down stage (so up stages have blocks to drop) and two transformer blocks."""
    cfg = load_preset("tiny")
    return dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, layers_per_block=2, transformer_depth=2))


@pytest.fixture(scope="module")
def eblocks(config):
    return elastic_blocks(config, RESOLUTIONS)


@pytest.fixture(scope="module")
def table(eblocks):
    return hand_table(eblocks)


def _space(config, axes, resolutions=RESOLUTIONS):
    return GenomeSpace(config.unet, tuple(resolutions), tuple(axes))


def _some_subnets(config, n: int) -> list[SubNet]:
    """The largest, the smallest and random others (all 432 would take minutes to decompose one by one)."""
    subnets = list(all_subnets(config.unet))
    picks = np.random.default_rng(0).choice(len(subnets), n - 2, replace=False)
    return [SubNet.full(config.unet), SubNet.smallest(config.unet)] + [subnets[i] for i in picks]


def _direct(config, subnet, resolution):
    h, w = resolution
    return model_blocks(dataclasses.replace(config, height=h, width=w, unet=subnet_config(config.unet, subnet)))


# -- table entries -------------------------------------------------------------------------------------------


def test_composed_blocks_equal_decomposing_each_extracted_model(config, eblocks):
    for subnet, resolution in itertools.product(_some_subnets(config, 8), RESOLUTIONS):
        composed, direct = eblocks.of(subnet, resolution), _direct(config, subnet, resolution)
        assert composed.backbone == direct.backbone
        assert composed.slots == direct.slots and composed.temporal == direct.temporal
        assert set(composed.blocks) == set(direct.blocks) <= set(eblocks.blocks)


def test_signatures_name_one_block_and_are_shared_across_subnetworks(config, eblocks):
    """A signature always builds the same shapes, different shapes never share one; a block two
    sub-networks have in common is one entry; the full model's entries are today's."""
    shapes: dict[str, list] = {}
    for subnet in _some_subnets(config, 10):
        for sig, block in _direct(config, subnet, RESOLUTIONS[0]).blocks.items():
            module = block.make_meta_module()
            got = [sig.split(":")[0]] + [tuple(p.shape) for p in module.parameters()] + [
                tuple(t.shape) for t in block.inputs_meta]
            assert shapes.setdefault(sig, got) == got, sig
    by_shape = {}
    for sig, got in shapes.items():
        assert by_shape.setdefault(repr(got), sig) == sig, f"{sig} and {by_shape[repr(got)]} are the same block"
    narrow = SubNet.full(config.unet)
    narrow = dataclasses.replace(narrow, widths=(0.5,) + narrow.widths[1:])
    a, b = eblocks.of(SubNet.full(config.unet), (32, 32)), eblocks.of(narrow, (32, 32))
    level1 = {sig for path, sig in a.calls if path.startswith(("down.1", "up.1", "mid"))}
    assert level1 == {sig for path, sig in b.calls if path.startswith(("down.1", "up.1", "mid"))}
    assert {sig for path, sig in a.calls if path == "down.0.res.0"} != {sig for path, sig in b.calls if path == "down.0.res.0"}
    assert any("inner=8" in sig for sig in b.backbone)
    assert set(model_blocks(config).blocks) <= set(eblocks.blocks)
    at64 = eblocks.of(narrow, (64, 64))
    shared = set(at64.backbone) & set(b.backbone)  # only what has no spatial shape is shared across resolutions
    assert shared == {s for s in b.backbone if s.startswith("backbone.time_embedding")}


# -- predictor -----------------------------------------------------------------------------------------------


def _expected_call(table, blocks, plan: dict) -> float:
    e, call = table.entries, table.entries[CALL_SIGNATURE].mean_ms
    total = call + sum(n * (e[s].mean_ms - call) for s, n in blocks.backbone.items())
    return total + sum(e[blocks.temporal[s][op]].mean_ms - call for s, op in plan.items() if op != "none")


def test_predictor_sums_the_table_entries_of_each_steps_subnetwork(config, eblocks, table):
    space = _space(config, ["temporal", "width", "depth", "resolution"])
    pred = ElasticPredictor(table, eblocks, space)
    rng = np.random.default_rng(0)
    allowed = space.allowed()
    for _ in range(6):
        genome = np.array([[rng.choice(np.flatnonzero(allowed[j])) for j in range(space.genes)] for _ in range(4)], np.int8)
        genome[:, space.resolution_gene] = genome[0, space.resolution_gene]
        expected = []
        for row in genome:
            plan, subnet, resolution = space.decode(row)
            expected.append(_expected_call(table, eblocks.of(subnet, resolution), plan.to_dict()))
        p = pred.predict(genome)
        assert p.unet_step_ms == pytest.approx(expected)
        assert pred.denoise_ms(genome[None])[0] == pytest.approx(sum(expected))
        vae = table.entries[eblocks.of(space.subnet(genome[0]), space.resolution(genome[0])).vae_decoder].mean_ms
        assert p.end_to_end_ms == pytest.approx(sum(expected) + config.num_frames * vae +
                                                table.entries[eblocks.of(SubNet.full(config.unet), (32, 32)).text_encoder].mean_ms)


def test_memory_counts_each_distinct_subnetwork_once(config, eblocks, table):
    space = _space(config, ["width", "depth"])
    pred = ElasticPredictor(table, eblocks, space)
    full = space.default_row()
    small = space.encode(config.unet.temporal_plan, SubNet.smallest(config.unet), RESOLUTIONS[0])
    one = pred.predict(full[None]).peak_memory_bytes
    assert pred.predict(np.stack([full] * 4)).peak_memory_bytes == one
    both = pred.predict(np.stack([small, small, full, full])).peak_memory_bytes
    assert both > one
    assert both - one <= pred.part(small)[0].backbone_weight_bytes + 1


def test_missing_resolution_is_an_error_naming_it(config, table):
    blocks = elastic_blocks(config, [(32, 32), (96, 96)])
    with pytest.raises(TableError, match="resolution 96x96"):
        ElasticPredictor(table, blocks, _space(config, ["width", "resolution"], [(32, 32), (96, 96)]))


# -- genomes ---------------------------------------------------------------------------------------------------


def test_genome_round_trip_and_fixed_axes(config):
    space = _space(config, ["width", "depth"])
    rng = np.random.default_rng(1)
    for _ in range(20):
        subnet = SubNet.sample(config.unet, rng=__import__("random").Random(int(rng.integers(1e9))))
        row = space.encode(config.unet.temporal_plan, subnet, (32, 32))
        plan, back, resolution = space.decode(row)
        assert back == subnet and resolution == (32, 32)
        assert set(plan) == {s.id for s in __import__("mobile_sdk.plan", fromlist=["unet_slots"]).unet_slots(
            subnet_config(config.unet, subnet))}
    with pytest.raises(ConfigError, match="resolution"):
        space.encode(config.unet.temporal_plan, SubNet.full(config.unet), (64, 64))  # not searched: one resolution
    assert space.allowed()[: len(space.slots)].sum(1).max() == 1  # temporal fixed to the model's plan
    with pytest.raises(ConfigError, match="unknown axis 'wdith'"):
        parse_space("temporal,wdith")


# -- search --------------------------------------------------------------------------------------------------


class WidthLoss:
    """A fixed objective over the sub-network genes: wider and deeper is better, more at late steps, with
    interactions (not additive), so the step-aware optimum gives late steps the bigger sub-network."""

    label = "synthetic"

    def __init__(self, space, seed=0):
        self.space, self.rng = space, np.random.default_rng(seed)
        s = len(space.slots)
        self.weights = self.rng.uniform(0.5, 1.5, space.genes - s)

    def step_losses(self, row):
        s = len(self.space.slots)
        size = np.array([float(v if not isinstance(v, tuple) else v[0]) for v in
                         (self.space.options[j][row[j]] for j in range(s, self.space.genes))])
        base = -float((self.weights * size).sum()) - 0.3 * float(size[:2].prod())
        return np.array([base * (0.2 + k) for k in range(4)])

    def loss(self, genome):
        genome = np.atleast_2d(genome)
        if len(genome) == 1:
            return float(self.step_losses(genome[0]).mean())
        return float(np.mean([self.step_losses(r)[k] for k, r in enumerate(genome)]))


def _budget(pred, space, fraction: float) -> float:
    """`fraction` of the way from the smallest sub-network's denoising latency to the full model's."""
    small = space.encode(space.unet.temporal_plan, SubNet.smallest(space.unet), space.resolutions[0])
    lo, hi = (pred.denoise_ms(np.repeat(row[None, None], 4, 1))[0] for row in (small, space.default_row()))
    return lo + fraction * (hi - lo)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_width_depth_search_returns_valid_subnetworks_within_budget(config, eblocks, table, fraction):
    space = _space(config, ["width", "depth"])
    pred = ElasticPredictor(table, eblocks, space)
    constraint = ElasticConstraint(pred, _budget(pred, space, fraction))
    objective = WidthLoss(space)
    truth = exhaustive_search(objective, constraint, 1)  # of 432 sub-networks, those within the budget
    assert truth.best_latency_ms <= constraint.budget_ms
    hits = 0
    for seed in range(3):
        result = evolutionary_search(objective, constraint, 1, SearchConfig(population=24, generations=20, seed=seed),
                                     progress=False)
        assert all(r["latency_ms"] <= constraint.budget_ms + 1e-9 for r in result.history)
        plan, subnet, _ = space.decode(result.best[0])
        subnet.validate(config.unet)
        VideoUNet(subnet_config(config.unet, subnet))  # an ordinary model
        assert result.best_loss >= truth.best_loss - 1e-12
        hits += result.best_loss == pytest.approx(truth.best_loss)
    assert hits >= 2


def test_step_aware_seeded_with_uniform_front_is_never_worse(config, eblocks, table):
    space = _space(config, ["width", "depth"])
    pred = ElasticPredictor(table, eblocks, space)
    improved = 0
    for seed, fraction in itertools.product(range(3), (0.3, 0.6)):
        constraint = ElasticConstraint(pred, _budget(pred, space, fraction))
        objective = WidthLoss(space, seed)
        cfg = SearchConfig(population=12, generations=6, seed=seed)
        uniform = evolutionary_search(objective, constraint, 1, cfg, progress=False)
        seeds = [np.repeat(r["codes"], 4, 0) for r in uniform.pareto_front()[::-1]]
        step = evolutionary_search(objective, constraint, 4, cfg, progress=False, seeds=seeds)
        assert step.best.shape == (4, space.genes)
        assert step.best_loss <= uniform.best_loss + 1e-12
        assert step.best_latency_ms <= constraint.budget_ms + 1e-9
        assert (step.best[:, space.resolution_gene] == step.best[0, space.resolution_gene]).all()
        improved += step.best_loss < uniform.best_loss - 1e-9
    assert improved >= 1  # per-step sizes pay off on this objective somewhere


def test_unreachable_budget_names_the_fastest_genome(config, eblocks, table):
    space = _space(config, ["width", "depth", "resolution"])
    pred = ElasticPredictor(table, eblocks, space)
    with pytest.raises(SearchError, match="smallest sub-network and resolution"):
        evolutionary_search(WidthLoss(space), ElasticConstraint(pred, 1.0), 1, progress=False)


# -- the shared-weight objective ------------------------------------------------------------------------------


def test_elastic_evaluator_is_deterministic_and_uniform_rows_score_their_own_loss(config):
    torch.manual_seed(0)
    unet = VideoUNet(config.unet).eval()
    space = _space(config, ["width", "depth", "resolution"])
    g = torch.Generator().manual_seed(3)
    data = {r: torch.randn(2, config.unet.in_channels, config.num_frames, r[0] // 8, r[1] // 8, generator=g)
            for r in RESOLUTIONS}
    hidden = torch.randn(2, config.text_encoder.max_length, config.unet.cross_attention_dim, generator=g)
    ev = ElasticEvaluator(unet, space, hidden, data.__getitem__, [1.0, 0.75, 0.5, 0.25], "test")
    row = space.encode(config.unet.temporal_plan, SubNet.smallest(config.unet), (64, 64))
    first = ev.step_losses(row)
    ev._cache.clear()
    assert np.array_equal(first, ev.step_losses(row))
    assert ev.loss(np.stack([row] * 4)) == pytest.approx(ev.loss(row))
    full = space.default_row()
    assert ev.loss(full) != ev.loss(row)
    with pytest.raises(Exception, match="needs --supernet"):
        ElasticEvaluator(unet, _space(config, ["temporal", "width"]), hidden, data.__getitem__, [1.0], "test")


def test_rollout_evaluator_scores_whole_schedules_against_the_base_model(config):
    torch.manual_seed(0)
    unet = VideoUNet(config.unet).eval()
    space = _space(config, ["width", "depth"], [(64, 64)])
    g = torch.Generator().manual_seed(3)
    data = {(64, 64): torch.randn(2, config.unet.in_channels, config.num_frames, 8, 8, generator=g)}
    hidden = torch.randn(2, config.text_encoder.max_length, config.unet.cross_attention_dim, generator=g)
    steps = [1.0, 0.75, 0.5, 0.25]
    ev = RolloutEvaluator(unet, space, hidden, data.__getitem__, steps, "test", base=unet,
                          scheduler=RectifiedFlowScheduler())
    full = space.default_row()
    small = space.encode(config.unet.temporal_plan, SubNet.smallest(config.unet), (64, 64))
    assert ev.loss(full) == 0.0  # the base model against itself
    assert ev.loss(np.stack([small] * 4)) == ev.loss(small) > 0
    late = ev.loss(np.stack([full] * 3 + [small]))  # the small one only at the last step
    assert 0 < late != ev.loss(np.stack([small] + [full] * 3))  # where a step runs small matters
    with pytest.raises(SDKError, match="needs the base model"):
        RolloutEvaluator(unet, space, hidden, data.__getitem__, steps, "test", scheduler=RectifiedFlowScheduler())


# -- CLI -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    """A hand-made table with every elastic entry of the demo model (which the CLI loads) at 64 and 32 px."""
    table = hand_table(elastic_blocks(load_preset("small"), [(64, 64), (32, 32)]))
    table.header.update(preset="small", resolution={"height": 64, "width": 64, "num_frames": 8})
    path = tmp_path_factory.mktemp("elastic") / "table.json"
    save_table(table, path)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--space", "temporal,wdith"], "unknown axis 'wdith'"),
    (["--space", "width", "--resolutions", "32x32"], "--resolutions needs the resolution axis"),
    (["--space", "width,resolution", "--resolutions", "48x32"], "multiples of 32"),
    (["--space", "width,resolution", "--resolutions", "32x32,96x96"], "resolution 96x96"),
    (["--space", "temporal,width"], "needs --supernet"),
    (["--objective", "rollout"], "--objective rollout: only with --space width"),
])
def test_cli_bad_inputs_are_one_line_errors(tmp_path, small_table, capsys, argv, message):
    code = cli_main(["search", "--table", str(small_table), "--budget-ms", "1000", "--out", str(tmp_path / "p.json"),
                     "--preset", "small", *argv])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- export of a searched sub-network ---------------------------------------------------------------------------


def test_export_applies_the_searched_subnetwork(tmp_path, tiny_pipe):
    """One sub-network for every step: a plain UNet, really smaller, at the searched resolution; the config
    keeps the full UNet's (what the manifest records each method's sub-network of)."""
    from export.nas.searched import apply_searched_subnets

    smallest = SubNet.smallest(tiny_pipe.config.unet)
    pipe = apply_searched_subnets(tiny_pipe, searched_plan(tmp_path / "plan.json", [smallest] * 4, (64, 64)))
    assert (pipe.config.height, pipe.config.width) == (64, 64) and pipe.config.unet == tiny_pipe.config.unet
    assert type(pipe.unet) is VideoUNet and pipe.unet.config == subnet_config(tiny_pipe.config.unet, smallest)
    assert sum(p.numel() for p in pipe.unet.parameters()) < sum(p.numel() for p in tiny_pipe.unet.parameters())
    assert subnet_of(pipe.config.unet, pipe.unet.config) == smallest
    assert apply_searched_subnets(tiny_pipe, None) is tiny_pipe


def test_export_gives_each_distinct_plan_and_subnetwork_of_the_steps_a_view(tmp_path, tiny_pipe):
    """Steps that share (plan, sub-network) share a view: [A/small, B/small, A/small, A/full] is three."""
    from export.nas.searched import apply_searched_subnets

    cfg = tiny_pipe.config.unet
    smallest, full = SubNet.smallest(cfg), SubNet.full(cfg)
    plan = tiny_pipe.unet.plan.to_dict()
    pipe = apply_searched_subnets(tiny_pipe.with_step_plans([plan, {}, plan, plan]),
                                  searched_plan(tmp_path / "plan.json", [smallest, smallest, smallest, full]))
    assert isinstance(pipe.unet, StepAwareUNet) and pipe.unet.step_to_view == [0, 1, 0, 2]
    assert [subnet_of(cfg, v.config) for v in pipe.unet.views] == [smallest, smallest, full]
    assert [sum(op != "none" for op in v.plan.values()) > 0 for v in pipe.unet.views] == [True, False, True]
    eager = pipe(["a red circle moving right"], generator=torch.Generator().manual_seed(0), output_type="latent")
    assert torch.isfinite(eager.latents).all()


@pytest.mark.parametrize("steps, message", [
    ([{"subnet": None, "resolution": {"height": 32, "width": 32}}] * 4, r"search.steps\[0\].subnet: expected a mapping"),
    ([{"resolution": {"height": 32}}] * 4, r"search.steps\[0\].resolution: expected"),
    ([{"subnet": {"widths": [1.0]}, "resolution": {"height": 32, "width": 32}}] * 4, r"search.steps\[0\].subnet"),
    (["x"] * 4, r"search.steps\[0\].resolution"),
    ([{"subnet": {}, "resolution": {"height": 32, "width": 32}}] * 3, "search.steps must list one entry per denoising step"),
])
def test_bad_searched_steps_are_errors_naming_the_file(tmp_path, tiny_pipe, steps, message):
    from export.nas.searched import apply_searched_subnets

    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"slots": {}, "search": {"steps": steps}}))
    with pytest.raises(SDKError, match=rf"{path}: {message}"):
        apply_searched_subnets(tiny_pipe, str(path))


def test_searched_steps_must_share_a_valid_resolution(tmp_path, tiny_pipe):
    from export.nas.searched import apply_searched_subnets

    full = SubNet.full(tiny_pipe.config.unet)
    mixed = searched_plan(tmp_path / "mixed.json", [full] * 4)
    doc = json.loads(Path(mixed).read_text())
    doc["search"]["steps"][3]["resolution"] = {"height": 64, "width": 64}
    Path(mixed).write_text(json.dumps(doc))
    with pytest.raises(SDKError, match="search.steps use 2 resolutions"):
        apply_searched_subnets(tiny_pipe, mixed)
    with pytest.raises(SDKError, match=r"search.steps\[0\].resolution: height and width must be positive multiples of 16"):
        apply_searched_subnets(tiny_pipe, searched_plan(tmp_path / "odd.json", [full] * 4, (40, 40)))
