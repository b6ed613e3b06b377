"""`mobile-sdk search` and `mobile-sdk supernet ...` (imported by the CLI only when used)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mobile_sdk.errors import SDKError


def _config_for_table(config, table, table_path: str):
    """The model config at the table's resolution; a table for another preset is an error."""
    h = table.header
    if h["preset"] != config.name:
        raise SDKError(f"{table_path}: the table was made for preset {h['preset']!r}, the model is {config.name!r}")
    r = h["resolution"]
    return replace(config, height=r["height"], width=r["width"], num_frames=r["num_frames"])


def cmd_search(args) -> int:
    from mobile_sdk.config import load_preset

    from .latency_table import load_table
    from .model_blocks import model_blocks
    from .predictor import LatencyPredictor
    from .search import Constraint, ProxyObjective, SearchConfig, evolutionary_search
    from .search_outputs import write_search_outputs

    table = load_table(args.table)
    if args.supernet:
        from .supernet_eval import SupernetEvaluator

        objective = SupernetEvaluator.from_dir(args.supernet)
        config = objective.model_config
    else:
        objective, config = ProxyObjective(), load_preset(args.preset)
        print("warning: no --supernet given; plans are ranked by a PROXY (temporal-mixing score), not by quality")
    if args.preset and config.name != args.preset:
        raise SDKError(f"--preset {args.preset} does not match the supernet's model ({config.name})")
    config = _config_for_table(config, table, args.table)
    blocks = model_blocks(config)
    predictor = LatencyPredictor(table, blocks, args.table)
    constraint = Constraint(predictor, args.budget_ms, args.memory_mb * 2**20 if args.memory_mb else None)
    genes = blocks.steps if args.step_aware else 1
    print(f"latency table: {table.describe()}")
    result = evolutionary_search(objective, constraint, genes,
                                 SearchConfig(population=args.population, generations=args.generations, seed=args.seed))
    summary = write_search_outputs(result, constraint, objective.label, args.out,
                                   extra={"supernet": str(args.supernet) if args.supernet else None})
    p = summary["predicted"]
    print(f"wrote {args.out} (+ .pareto.json, .pareto.png): {summary['evaluations']} plans evaluated")
    print(f"predicted ({table.provenance['kind'].upper()} table): denoising {p['denoise_ms']:.3f} ms "
          f"(budget {args.budget_ms:g}), end to end {p['end_to_end_ms']:.3f} ms, peak {p['peak_memory_mb']:.1f} MB; "
          f"{objective.label}: {summary['loss']:.5f}")
    return 0


def cmd_supernet_train(args) -> int:
    from mobile_sdk.weights import default_model_dir

    from .supernet_train import SupernetTrainConfig, train_supernet

    over = {"steps": args.steps, "batch_size": args.batch_size, "warmup_steps": args.warmup_steps, "buckets": args.buckets}
    cfg = SupernetTrainConfig(**{k: v for k, v in over.items() if v is not None})
    report = train_supernet(args.model or default_model_dir(), args.out, cfg)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))
    return 0


def cmd_supernet_rank(args) -> int:
    from .supernet_rank import rank_check

    report = rank_check(args.supernet, args.out or Path(args.supernet) / "rank", args.plans, args.steps, args.seed)
    for r in report["rows"]:
        print(f"bucket {r['cost_bucket']}: supernet {r['supernet_loss']:.5f}  alone {r['standalone_loss']:.5f}")
    print(f"Kendall tau {report['kendall_tau']:.3f}, Spearman rho {report['spearman_rho']:.3f} over {report['plans']} plans")
    return 0


def add_search_parsers(sub) -> None:
    s = sub.add_parser("search", help="evolutionary temporal-placement search under a latency (and memory) budget")
    s.add_argument("--preset", help="model preset (default: the supernet's model; required without --supernet)")
    s.add_argument("--table", required=True, help="latency table JSON (mobile-sdk profile ...)")
    s.add_argument("--budget-ms", type=float, required=True, help="predicted latency of the whole denoising loop")
    s.add_argument("--memory-mb", type=float, help="peak memory limit")
    s.add_argument("--step-aware", action="store_true", help="one plan per denoising step (DDSM)")
    s.add_argument("--supernet", metavar="DIR", help="trained supernet (quality signal); without it a labelled proxy ranks plans")
    s.add_argument("--population", type=int, default=32)
    s.add_argument("--generations", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="PLAN.json (feeds export --plan)")
    s.set_defaults(func=_require_preset_without_supernet(cmd_search))

    n = sub.add_parser("supernet", help="weight-sharing supernet over temporal placements (SNED)")
    ns = n.add_subparsers(dest="supernet_command", required=True)
    t = ns.add_parser("train", help="train every candidate temporal op on a frozen backbone (resumable)")
    t.add_argument("--model", metavar="DIR", help="base model folder (default: the shipped demo model)")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--warmup-steps", type=int, help="sampling warm-up (largest plan dominates early)")
    t.add_argument("--buckets", type=int, help="cost buckets for dynamic cost sampling")
    t.set_defaults(func=cmd_supernet_train)
    r = ns.add_parser("rank-check", help="rank correlation: supernet losses vs plans trained alone")
    r.add_argument("--supernet", required=True)
    r.add_argument("--plans", type=int, default=5)
    r.add_argument("--steps", type=int, default=300, help="training steps of each plan alone")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out")
    r.set_defaults(func=cmd_supernet_rank)


def _require_preset_without_supernet(fn):
    def run(args):
        if not args.supernet and not args.preset:
            raise SDKError("search needs --preset when no --supernet is given")
        return fn(args)
    return run
