"""What a search leaves behind: PLAN.json (feeds `export --plan`), PLAN.pareto.json and PLAN.pareto.png.

PLAN.json is a plan file (`{"slots": ...}` or `{"steps": [...]}`) whose "search" key records the
prediction, the budget, the table and its provenance, and what ranked the plans; for a search over
sub-networks and resolutions also each step's sub-network and resolution (`search.steps`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mobile_sdk.atomic import atomic_file
from mobile_sdk.plan import StepPlans, TemporalPlan

from export.nas.genome import GenomeSpace
from export.nas.search_algorithm import Constraint, ElasticConstraint, SearchResult


def codes_to_plans(codes: np.ndarray, slots: list[str]) -> list[TemporalPlan]:
    return [TemporalPlan.from_codes(slots, row) for row in np.atleast_2d(codes)]


def write_search_outputs(result: SearchResult, constraint: Constraint, objective_label: str, out: str | Path,
                         extra: dict | None = None) -> dict:
    out = Path(out)
    predictor = constraint.predictor
    slots = predictor.blocks.slots
    plans = StepPlans.of(codes_to_plans(result.best, slots))
    prediction = predictor.predict(plans)
    table = predictor.table
    summary = {
        "objective": objective_label,
        "loss": result.best_loss,
        "predicted": prediction.to_dict(),
        "budget_ms": constraint.budget_ms, "budget_applies_to": "denoising loop (all steps)",
        "memory_limit_mb": None if constraint.memory_bytes is None else constraint.memory_bytes / 2**20,
        "table": {"description": table.describe(), "provenance": table.provenance, "device": table.header["device"],
                  "preset": table.header["preset"], "quantize": table.header["quantize"]},
        "step_aware": plans.step_aware,
        "evaluations": result.evaluations, "search_config": result.config, **(extra or {}),
    }
    doc = plans.to_file_dict(search=summary)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    front = [{"latency_ms": r["latency_ms"], "loss": r["loss"],
              "plans": [p.to_dict() for p in codes_to_plans(r["codes"], slots)]} for r in result.pareto_front()]
    with atomic_file(out.with_suffix(".pareto.json")) as tmp:
        tmp.write_text(json.dumps({"objective": objective_label, "table": table.describe(), "front": front}, indent=1) + "\n")
    _plot(result, constraint, objective_label, table.describe(), out.with_suffix(".pareto.png"))
    return summary


def _plot(result: SearchResult, constraint: Constraint, label: str, table: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lat = np.array([r["latency_ms"] for r in result.history])
    loss = np.array([r["loss"] for r in result.history])
    ax.scatter(lat, loss, s=8, alpha=0.35, label=f"evaluated plans ({len(lat)})")
    front = result.pareto_front()
    ax.plot([r["latency_ms"] for r in front], [r["loss"] for r in front], "o-", color="C1", ms=4, label="Pareto front")
    ax.axvline(constraint.budget_ms, color="k", ls="--", lw=1, label=f"budget {constraint.budget_ms:g} ms")
    ax.scatter([result.best_latency_ms], [result.best_loss], marker="*", s=160, color="C3", zorder=5, label="chosen")
    ax.set(xlabel="predicted denoising latency (ms)", ylabel=label if len(label) < 40 else "loss (lower is better)")
    ax.set_title(f"{label}\n{table}", fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def genome_steps(genome: np.ndarray, space: GenomeSpace, steps: int) -> list[dict]:
    """Per denoising step: its plan (over its sub-network's slots), sub-network and resolution."""
    rows = np.atleast_2d(genome)
    out = []
    for row in (np.repeat(rows, steps, 0) if len(rows) == 1 else rows):
        plan, subnet, (h, w) = space.decode(row)
        out.append({"plan": plan.to_dict(), "subnet": subnet.to_dict(), "resolution": {"height": h, "width": w}})
    return out


def write_elastic_outputs(result: SearchResult, constraint: ElasticConstraint, objective_label: str, out: str | Path,
                          extra: dict | None = None) -> dict:
    """As write_search_outputs, for whole-space genomes: PLAN.json's "search" records each step's
    sub-network and resolution (`search.steps`), which `export --plan` applies, and the genome itself."""
    out = Path(out)
    predictor, space = constraint.predictor, constraint.predictor.space
    per_step = genome_steps(result.best, space, predictor.steps)
    plans = StepPlans.of([s["plan"] for s in per_step] if len(result.best) > 1 else per_step[0]["plan"])
    table = predictor.table
    summary = {
        "objective": objective_label, "loss": result.best_loss, "predicted": predictor.predict(result.best).to_dict(),
        "budget_ms": constraint.budget_ms, "budget_applies_to": "denoising loop (all steps)",
        "memory_limit_mb": None if constraint.memory_bytes is None else constraint.memory_bytes / 2**20,
        "table": {"description": table.describe(), "provenance": table.provenance, "device": table.header["device"],
                  "preset": table.header["preset"], "quantize": table.header["quantize"]},
        "space": list(space.axes), "step_aware": len(result.best) > 1,
        "steps": per_step, "genome": np.asarray(result.best).tolist(), "genes": space.names,
        "evaluations": result.evaluations, "search_config": result.config, **(extra or {}),
    }
    doc = plans.to_file_dict(search=summary)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    front = [{"latency_ms": r["latency_ms"], "loss": r["loss"], "steps": genome_steps(r["codes"], space, predictor.steps)}
             for r in result.pareto_front()]
    with atomic_file(out.with_suffix(".pareto.json")) as tmp:
        tmp.write_text(json.dumps({"objective": objective_label, "table": table.describe(), "space": list(space.axes),
                                   "front": front}, indent=1) + "\n")
    _plot(result, constraint, objective_label, table.describe(), out.with_suffix(".pareto.png"))
    return summary
