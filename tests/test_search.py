import json

import numpy as np
import pytest
import torch

from export.nas.model_blocks import model_blocks
from export.nas.efficiency_predictor import LatencyPredictor
from export.nas.search_algorithm import Constraint, ProxyObjective, SearchConfig, SearchError, evolutionary_search, exhaustive_search
from export.nas.supernet import SupernetUNet
from export.nas.accuracy_predictor import SupernetEvaluator
from export.nas.supernet_train import DynamicCostSampler, temporal_flops
from mobile_sdk.config import load_preset
from mobile_sdk.plan import TEMPORAL_OPS, load_plan_file
from tests.test_latency_table import hand_table


@pytest.fixture(scope="module")
def blocks():
    return model_blocks(load_preset("tiny"))


@pytest.fixture(scope="module")
def predictor(blocks):
    return LatencyPredictor(hand_table(blocks), blocks)


class Synthetic:
    """A fixed objective with interactions between neighbouring slots (not additive, so not trivial)."""

    label = "synthetic"

    def __init__(self, slots: int, seed: int):
        rng = np.random.default_rng(seed)
        self.unary = rng.normal(size=(slots, len(TEMPORAL_OPS)))
        self.pair = rng.normal(size=(len(TEMPORAL_OPS), len(TEMPORAL_OPS))) * 0.7

    def loss(self, codes):
        c = np.atleast_2d(codes)
        total = 0.0
        for row in c:
            total += self.unary[np.arange(len(row)), row].sum() + sum(self.pair[a, b] for a, b in zip(row[:-1], row[1:]))
        return float(total / len(c))


def _restricted(predictor, free: int):
    """Only the first `free` slots may change (5 ops each): 5**free plans, brute-forceable."""
    allowed = np.zeros((len(predictor.blocks.slots), len(TEMPORAL_OPS)), bool)
    allowed[:, 0] = True
    allowed[:free] = True
    return allowed


def test_evolutionary_search_finds_the_brute_force_optimum(predictor):
    allowed = _restricted(predictor, 5)
    lo = predictor.denoise_ms(np.zeros((1, 4, len(allowed)), np.int8))[0]
    hits = 0
    for seed in range(5):
        objective = Synthetic(len(allowed), seed)
        budget = lo + (predictor.slot_ms[:5].max(1).sum() * 4) * 0.5
        constraint = Constraint(predictor, budget, allowed=allowed)
        truth = exhaustive_search(objective, constraint)
        found = evolutionary_search(objective, constraint, config=SearchConfig(population=24, generations=25, seed=seed),
                                    progress=False)
        hits += found.best_loss == pytest.approx(truth.best_loss)
        assert found.evaluations < truth.evaluations  # it did not just enumerate the space
    assert hits >= 4


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.6, 1.0])
def test_budgets_are_always_respected(predictor, fraction):
    s = len(predictor.blocks.slots)
    lo = predictor.denoise_ms(np.zeros((1, 4, s), np.int8))[0]
    hi = predictor.denoise_ms(np.broadcast_to(predictor.slot_ms.argmax(1).astype(np.int8), (1, 4, s)).copy())[0]
    budget = lo + fraction * (hi - lo)
    memory = predictor.peak_memory_bytes(np.zeros((1, 4, s), np.int8))[0] * 1.05
    constraint = Constraint(predictor, budget, memory)
    for genes in (1, 4):
        result = evolutionary_search(ProxyObjective(), constraint, genes, SearchConfig(population=12, generations=6), progress=False)
        assert all(r["latency_ms"] <= budget + 1e-9 for r in result.history)
        assert all(r["memory_bytes"] <= memory for r in result.history)
        per_step = constraint.expand(result.best[None])
        assert predictor.denoise_ms(per_step)[0] <= budget + 1e-9


def test_step_aware_search_uses_per_step_plans_within_the_total_budget(predictor):
    s = len(predictor.blocks.slots)
    lo = predictor.denoise_ms(np.zeros((1, 4, s), np.int8))[0]
    budget = lo + 2 * predictor.slot_ms.max()

    class LateStepsMatter:
        label = "favours temporal layers at the last step"

        def loss(self, codes):
            return -float((np.asarray(codes)[-1] > 0).sum()) - 0.1 * float((np.asarray(codes) > 0).sum())

    result = evolutionary_search(LateStepsMatter(), Constraint(predictor, budget), genes=4,
                                 config=SearchConfig(population=16, generations=10), progress=False)
    assert result.best.shape == (4, s)
    assert result.best_latency_ms <= budget + 1e-9
    assert (result.best[-1] > 0).sum() >= (result.best[0] > 0).sum()


def test_infeasible_budget_names_the_fastest_latency(predictor):
    s = len(predictor.blocks.slots)
    lo = predictor.denoise_ms(np.zeros((1, 4, s), np.int8))[0]
    with pytest.raises(SearchError, match=f"fastest achievable.*{lo:.3f} ms"):
        evolutionary_search(ProxyObjective(), Constraint(predictor, lo * 0.5), progress=False)


def test_sampler_follows_warm_up_and_covers_all_buckets(blocks):
    cost = temporal_flops(blocks)
    sampler = DynamicCostSampler(cost, buckets=5, warmup_steps=100, seed=0)
    assert all(len(p) > 0 for p in sampler.pools)
    s = len(blocks.slots)
    costs = [cost[np.arange(s), p].sum(1) for p in sampler.pools]
    for b, c in enumerate(costs):  # each pool's plans really lie in their bucket
        assert sampler.edges[b] - 1e-6 <= c.min() and c.max() <= sampler.edges[b + 1] + 1e-6
    rng = np.random.default_rng(0)
    assert sampler.sample(0, rng)[1] == -1  # step 0: always the largest plan
    early = [sampler.sample(step, rng)[1] for step in range(0, 10) for _ in range(20)]
    assert early.count(-1) / len(early) > 0.85
    assert set(early) <= {-1, 4}  # only the most expensive bucket is open this early
    late = [sampler.sample(10_000, rng)[1] for _ in range(2000)]
    assert -1 not in late
    freq = np.bincount(late, minlength=5) / len(late)
    assert np.all(np.abs(freq - 0.2) < 0.04)  # dynamic cost sampling: buckets drawn uniformly


@pytest.fixture(scope="module")
def tiny_supernet():
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    net = SupernetUNet(cfg.unet)
    with torch.no_grad():
        for p in net.candidates.parameters():
            p.copy_(torch.randn(p.shape) * 0.1)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(4, 4, cfg.num_frames, 4, 4, generator=g)
    hidden = torch.randn(4, cfg.text_encoder.max_length, cfg.unet.cross_attention_dim, generator=g)
    return net, SupernetEvaluator(net, hidden, latents, [1.0, 0.75, 0.5, 0.25], seed=0, batch=2)


def test_supernet_evaluation_is_deterministic(tiny_supernet):
    net, ev = tiny_supernet
    s = len(net.slots)
    a, b = np.full(s, 4, np.int8), np.zeros(s, np.int8)
    first = ev.loss(a)
    ev._cache.clear()
    assert ev.loss(a) == first  # recomputed from scratch: same noise, same clips, same number
    assert ev.loss(b) != first
    per_step = np.stack([a, b, a, b])
    assert ev.loss(per_step) == pytest.approx(np.mean([ev.step_losses(a)[0], ev.step_losses(b)[1],
                                                       ev.step_losses(a)[2], ev.step_losses(b)[3]]))


def test_extracted_subnetwork_matches_the_supernet(tiny_supernet):
    net, ev = tiny_supernet
    plan = {"down0.*": "conv3d", "mid.attn0": "attn3d", "up1.*": "attn1d"}
    net.set_plan(plan)
    x, t, h = ev.latents[:1], torch.tensor([0.5]), ev.hidden[:1]
    with torch.no_grad():
        expected = net(x, t, h)
        sub = net.extract([plan])
        assert torch.equal(sub(x, t, h), expected)
        stepwise = net.extract([plan, {}, plan, {"*": "conv1d"}])
        assert torch.equal(stepwise.for_step(0)(x, t, h), expected)
        net.set_plan({"*": "conv1d"})
        assert torch.equal(stepwise.for_step(3)(x, t, h), net(x, t, h))


def test_supernet_train_search_and_generate_end_to_end(tmp_path, blocks):
    """Tiny base model -> supernet (a few steps) -> search with it -> the plan runs through the CLI."""
    from export.nas.latency_table import save_table
    from export.nas.supernet_train import SupernetTrainConfig, train_supernet
    from mobile_sdk.cli import main
    from mobile_sdk.pipeline import VideoPipeline

    base = tmp_path / "base"
    VideoPipeline.from_preset("tiny", seed=0).save_pretrained(base)
    cfg = SupernetTrainConfig(steps=6, batch_size=2, warmup_steps=3, pool_clips=8, held_out_clips=2, checkpoint_every=3)
    report = train_supernet(base, tmp_path / "sn", cfg, progress=False)
    assert sum(report["samples_per_bucket"].values()) == 6
    assert (tmp_path / "sn" / "loss.png").exists() and (tmp_path / "sn" / "sampling.png").exists()
    table = save_table(hand_table(blocks), tmp_path / "table.json")
    lo = LatencyPredictor(hand_table(blocks), blocks).denoise_ms(np.zeros((1, 4, len(blocks.slots)), np.int8))[0]
    plan = tmp_path / "plan.json"
    assert main(["search", "--supernet", str(tmp_path / "sn"), "--table", str(table), "--budget-ms", f"{lo + 20:.3f}",
                 "--population", "6", "--generations", "2", "--step-aware", "--out", str(plan)]) == 0
    doc = json.loads(plan.read_text())
    assert doc["search"]["objective"] == SupernetEvaluator.label
    assert doc["search"]["table"]["provenance"]["kind"] == "estimated"
    assert doc["search"]["predicted"]["denoise_ms"] <= lo + 20
    assert len(load_plan_file(plan)) == 4
    assert (tmp_path / "plan.pareto.png").exists() and json.loads((tmp_path / "plan.pareto.json").read_text())["front"]
    video = tmp_path / "v.gif"
    assert main(["generate", "--supernet", str(tmp_path / "sn"), "--plan", str(plan), "--prompt", "a red circle moving right",
                 "--out", str(video)]) == 0
    assert video.exists()


def test_search_without_supernet_is_labelled_proxy(tmp_path, blocks, capsys):
    from export.nas.latency_table import save_table
    from mobile_sdk.cli import main

    table = save_table(hand_table(blocks), tmp_path / "t.json")
    plan = tmp_path / "p.json"
    assert main(["search", "--preset", "tiny", "--table", str(table), "--budget-ms", "1000", "--generations", "2",
                 "--population", "6", "--out", str(plan)]) == 0
    assert json.loads(plan.read_text())["search"]["objective"].startswith("PROXY")
    assert "PROXY" in capsys.readouterr().out
    assert main(["search", "--preset", "tiny", "--table", str(table), "--budget-ms", "0.001", "--out", str(plan)]) == 2
    assert main(["search", "--preset", "small", "--table", str(table), "--budget-ms", "100", "--out", str(plan)]) == 2
