"""Evolutionary search for temporal placement (SnapGen-V), optionally one plan per step (DDSM).

Small duck-typed parts, as in once-for-all:
  efficiency: `LatencyPredictor` (latency and memory of [N, steps, S] plan codes, from a latency table)
  quality:    anything with `loss(codes) -> float` and a `label` (lower is better): the supernet
              evaluator, or `ProxyObjective` when there is no supernet (labelled as a proxy)
  algorithm:  `evolutionary_search` (tournament selection, uniform crossover, mutation, elitism,
              seeded), which repairs every candidate into the budget, so no infeasible plan survives.

A genome is [G, S] op codes: G = 1 (one plan for every step) or the number of steps (step-aware). The
budget applies to the whole denoising loop (all steps); memory to the peak of the loaded programs.
`ElasticConstraint` puts the whole space behind the same interface (genes of export.nas.genome: plan,
sub-network, resolution); the algorithm only sees, per gene, its allowed option indices, its cheapest
option and whether all steps share it.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from mobile_sdk.errors import SDKError
from mobile_sdk.plan import TEMPORAL_OPS

from export.nas.efficiency_predictor import ElasticPredictor, LatencyPredictor


class SearchError(SDKError):
    """The search cannot run as asked (e.g. no plan fits the budget)."""


@dataclass
class SearchConfig:
    population: int = 32
    generations: int = 20
    tournament: int = 3
    crossover_rate: float = 0.9
    mutation_rate: float = 0.08  # per gene
    elite: int = 2
    seed: int = 0


class Constraint:
    """Latency (all denoising steps) and memory limits, from the predictor."""

    def __init__(self, predictor: LatencyPredictor, budget_ms: float, memory_bytes: float | None = None,
                 allowed: np.ndarray | None = None):
        self.predictor, self.budget_ms, self.memory_bytes = predictor, budget_ms, memory_bytes
        s = len(predictor.blocks.slots)
        self.allowed = np.ones((s, len(TEMPORAL_OPS)), bool) if allowed is None else allowed
        cost = np.where(self.allowed, predictor.slot_ms, np.inf)
        self.cheapest = cost.argmin(1).astype(np.int8)  # per slot; "none" unless it is not allowed
        self.shared = np.zeros(s, bool)  # no gene is tied across steps

    def expand(self, genomes: np.ndarray) -> np.ndarray:
        """[N, G, S] -> [N, steps, S] (a one-plan genome runs at every step)."""
        steps = self.predictor.steps
        return np.repeat(genomes, steps, axis=1) if genomes.shape[1] == 1 else genomes

    def latency_ms(self, genomes: np.ndarray) -> np.ndarray:
        return self.predictor.denoise_ms(self.expand(genomes))

    def memory(self, genomes: np.ndarray) -> np.ndarray:
        return self.predictor.peak_memory_bytes(self.expand(genomes))

    def feasible(self, genomes: np.ndarray) -> np.ndarray:
        ok = self.latency_ms(genomes) <= self.budget_ms + 1e-9
        if self.memory_bytes is not None:
            ok &= self.memory(genomes) <= self.memory_bytes
        return ok

    def check_achievable(self, genes: int) -> None:
        fastest = np.broadcast_to(self.cheapest, (1, genes, len(self.cheapest)))
        lat, mem = float(self.latency_ms(fastest)[0]), float(self.memory(fastest)[0])
        if lat > self.budget_ms:
            raise SearchError(f"no plan fits a {self.budget_ms:g} ms budget: the fastest achievable denoising loop "
                              f"(no temporal layers) takes {lat:.3f} ms on this table")
        if self.memory_bytes is not None and mem > self.memory_bytes:
            raise SearchError(f"no plan fits {self.memory_bytes / 2**20:.1f} MB: the smallest achievable peak is "
                              f"{mem / 2**20:.1f} MB on this table")


class ElasticConstraint(Constraint):
    """The same limits over whole-space genomes [N, G, genes] (export.nas.genome). The cheapest option of
    a gene: no temporal layer, the narrowest width, the fewest blocks, no middle block, the smallest
    resolution (each never slower than the others, so the all-cheapest genome is the fastest)."""

    def __init__(self, predictor: ElasticPredictor, budget_ms: float, memory_bytes: float | None = None):
        self.predictor, self.budget_ms, self.memory_bytes = predictor, budget_ms, memory_bytes
        space = predictor.space
        self.allowed, self.shared = space.allowed(), space.shared()
        s = len(space.slots)

        def cost(j: int, value) -> float:
            if j < s:
                return 0.0 if value == "none" else 1.0
            return value[0] * value[1] if j == space.resolution_gene else float(value)

        self.cheapest = np.array([min(range(len(o)), key=lambda k: cost(j, o[k])) for j, o in enumerate(space.options)],
                                 np.int8)

    def check_achievable(self, genes: int) -> None:
        fastest = np.broadcast_to(self.cheapest, (1, genes, len(self.cheapest)))
        lat, mem = float(self.latency_ms(fastest)[0]), float(self.memory(fastest)[0])
        if lat > self.budget_ms:
            raise SearchError(f"no genome fits a {self.budget_ms:g} ms budget: the fastest achievable denoising loop "
                              f"(smallest sub-network and resolution in the space, no temporal layers) takes "
                              f"{lat:.3f} ms on this table")
        if self.memory_bytes is not None and mem > self.memory_bytes:
            raise SearchError(f"no genome fits {self.memory_bytes / 2**20:.1f} MB: the smallest achievable peak is "
                              f"{mem / 2**20:.1f} MB on this table")


class ProxyObjective:
    """Used only without a supernet: rewards spatio-temporal mixing, not measured quality.

    Op scores (how far an op mixes information): none 0, conv1d 1 (a few frames, one pixel), attn1d 2
    (all frames, one pixel), conv3d 2 (a few frames and pixels), attn3d 3 (all frames and pixels).
    """

    label = "PROXY (no supernet): temporal-mixing score, not a quality measurement"
    SCORES = np.array([0.0, 1.0, 2.0, 2.0, 3.0])  # in TEMPORAL_OPS order

    def loss(self, codes: np.ndarray) -> float:
        return -float(self.SCORES[np.asarray(codes, dtype=np.int64)].sum(-1).mean())


@dataclass
class SearchResult:
    best: np.ndarray  # [G, S]
    best_loss: float
    best_latency_ms: float
    history: list[dict] = field(default_factory=list)  # every evaluated genome: codes, loss, latency, memory
    evaluations: int = 0
    config: dict = field(default_factory=dict)

    def pareto_front(self) -> list[dict]:
        """Evaluated plans that no other plan beats on both latency and loss, by latency."""
        pts = sorted(self.history, key=lambda r: (r["latency_ms"], r["loss"]))
        front, best = [], np.inf
        for r in pts:
            if r["loss"] < best - 1e-12:
                front.append(r)
                best = r["loss"]
        return front


def _repair(genome: np.ndarray, constraint, rng: np.random.Generator) -> np.ndarray:
    """Move random genes to their cheapest option until the genome fits (the all-cheapest one does).
    Shared genes take the first step's value first, and change in every step at once."""
    g = genome.copy()
    g[:, constraint.shared] = g[0, constraint.shared]
    while not constraint.feasible(g[None])[0]:
        costly = np.argwhere(g != constraint.cheapest[None, :])
        i, j = costly[rng.integers(len(costly))]
        if constraint.shared[j]:
            g[:, j] = constraint.cheapest[j]
        else:
            g[i, j] = constraint.cheapest[j]
    return g


def _random_genome(genes: int, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = allowed.shape[0]
    out = np.empty((genes, s), np.int8)
    for j in range(s):
        out[:, j] = rng.choice(np.flatnonzero(allowed[j]), size=genes)
    return out


def evolutionary_search(objective, constraint, genes: int = 1, config: SearchConfig | None = None,
                        progress: bool = True, seeds: list[np.ndarray] | None = None) -> SearchResult:
    """`seeds` ([genes, S] each, at most the population) start the first population in place of random
    genomes: the step-aware search gets the best single sub-networks, so it can only improve on them."""
    cfg = config or SearchConfig()
    constraint.check_achievable(genes)
    rng = np.random.default_rng(cfg.seed)
    allowed = constraint.allowed
    history: dict[bytes, dict] = {}

    def evaluate(genome: np.ndarray) -> float:
        key = genome.tobytes()
        if key not in history:
            loss = objective.loss(genome[0] if genes == 1 else genome)
            history[key] = {"codes": genome.copy(), "loss": loss, "latency_ms": float(constraint.latency_ms(genome[None])[0]),
                            "memory_bytes": float(constraint.memory(genome[None])[0])}
        return history[key]["loss"]

    # Step-aware: half the first population uses one plan at every step, so the search starts from the
    # single-plan space it contains (with few evaluations, random per-step genomes alone did worse).
    population = [_repair(_random_genome(1, allowed, rng).repeat(genes, 0) if genes > 1 and i % 2 else
                          _random_genome(genes, allowed, rng), constraint, rng) for i in range(cfg.population)]
    for i, seed in enumerate((seeds or [])[: cfg.population]):
        population[i] = _repair(np.asarray(seed, np.int8), constraint, rng)
    fitness = [evaluate(g) for g in population]
    for _ in tqdm(range(cfg.generations), desc="evolutionary search", disable=not progress):
        order = np.argsort(fitness)
        children = [population[i] for i in order[: cfg.elite]]
        while len(children) < cfg.population:
            a, b = (population[min(rng.choice(len(population), cfg.tournament, replace=False), key=lambda i: fitness[i])]
                    for _ in range(2))
            child = np.where(rng.random(a.shape) < 0.5, a, b) if rng.random() < cfg.crossover_rate else a.copy()
            mutate = rng.random(child.shape) < cfg.mutation_rate
            if mutate.any():
                child[mutate] = _random_genome(genes, allowed, rng)[mutate]
            children.append(_repair(child.astype(np.int8), constraint, rng))
        population = children
        fitness = [evaluate(g) for g in population]
    records = list(history.values())
    best = min(records, key=lambda r: (r["loss"], r["latency_ms"]))
    return SearchResult(best=best["codes"], best_loss=best["loss"], best_latency_ms=best["latency_ms"], history=records,
                        evaluations=len(records), config=asdict(cfg))


def exhaustive_search(objective, constraint, genes: int = 1) -> SearchResult:
    """Every genome of a (small) search space: the ground truth the evolutionary search is tested against."""
    constraint.check_achievable(genes)
    choices = [np.flatnonzero(constraint.allowed[j]) for j in range(constraint.allowed.shape[0])] * genes
    grid = np.array(list(itertools.product(*choices)), dtype=np.int8).reshape(-1, genes, constraint.allowed.shape[0])
    ok = constraint.feasible(grid)
    records = [{"codes": g, "loss": objective.loss(g[0] if genes == 1 else g), "latency_ms": float(lat)}
               for g, lat in zip(grid[ok], constraint.latency_ms(grid[ok]))]
    best = min(records, key=lambda r: (r["loss"], r["latency_ms"]))
    return SearchResult(best=best["codes"], best_loss=best["loss"], best_latency_ms=best["latency_ms"],
                        history=records, evaluations=len(records))
