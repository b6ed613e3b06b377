"""The export layer's subcommands: `export`, `train`, `search`, `supernet ...` (registered with the
`mobile-sdk` CLI through the `mobile_sdk.commands` entry point; heavy imports happen when one runs)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mobile_sdk import cli_types
from mobile_sdk.errors import SDKError
from mobile_sdk.model_args import add_model_args, load_pipeline, preset_with_plan


def cmd_export(args) -> int:
    from export.lowering.coreml import CoreMLOptions
    from export.lowering.package_writer import export_package

    from export.nas.searched import apply_searched_subnets

    pipe = apply_searched_subnets(load_pipeline(args), args.plan)
    out = Path(args.out)
    if out.suffix != ".mobilepkg":
        raise SDKError(f"{out}: a package path must end in .mobilepkg")
    export_package(pipe, out, targets=tuple(dict.fromkeys(args.target or ["executorch"])), quantize=args.quantize,
                   check=args.check, make_zip=args.zip, preset=args.preset,
                   coreml_options=CoreMLOptions(deployment_target=args.coreml_target),
                   sizes=_extra_sizes(args.size, pipe.config.num_frames), latency_table=_searched_table(args.plan),
                   overwrite=args.overwrite, low_memory=args.low_memory, overlap=args.overlap,
                   calibration_prompts=args.calibration_prompts)
    return 0


def _extra_sizes(texts: list[str] | None, frames: int) -> list[tuple[int, int, int]]:
    """`--size HEIGHTxWIDTH` (the model's frame count) or `--size FRAMESxHEIGHTxWIDTH`, repeatable."""
    sizes = []
    for text in texts or []:
        try:
            parts = tuple(int(v) for v in text.lower().split("x"))
        except ValueError:
            parts = ()
        if len(parts) not in (2, 3):
            raise SDKError(f"--size {text!r}: expected HEIGHTxWIDTH or FRAMESxHEIGHTxWIDTH in pixels, e.g. 64x64 or 8x64x64")
        sizes.append((frames, *parts) if len(parts) == 2 else parts)
    return sizes


def _searched_table(plan_file: str | None) -> dict | None:
    """A plan written by `mobile-sdk search` records the table (and its provenance) it was chosen on."""
    from mobile_sdk.config import read_json

    search = read_json(plan_file).get("search") if plan_file else None
    if not isinstance(search, dict):
        return None
    return {**search.get("table", {}), "predicted": search.get("predicted"), "objective": search.get("objective")}


def cmd_train(args) -> int:
    from export.train.distill import DistillConfig
    from export.train.distributed import session
    from export.train.run import STAGES, run_training
    from export.train.teacher import TeacherTrainConfig
    from export.train.vae import VAETrainConfig

    if args.model and (args.plan or args.preset):
        raise SDKError("train --model trains the model folder's own plan and size: drop --preset/--plan "
                       "(choose the plan when importing: mobile-sdk import --plan)")
    # A model folder brings its VAE; the quality check scores the synthetic data's prompts only.
    all_stages = [s for s in STAGES if not (s == "vae" and args.model) and not (s == "evaluate" and args.data)]
    stages = all_stages if args.stage == "all" else [args.stage]
    trainable = args.trainable or ("temporal" if args.model else "all")
    vae = VAETrainConfig(**{k: v for k, v in {"steps": args.vae_steps}.items() if v})
    if args.data and "vae" in stages:
        raise SDKError("--data trains the teacher and the distillation; the VAE stage trains on the synthetic data")
    teacher = TeacherTrainConfig(**{k: v for k, v in {"steps": args.teacher_steps, "batch_size": args.batch_size,
                                                        "fsdp": args.fsdp, "trainable": trainable, "data": args.data}.items() if v})
    distill = DistillConfig(**{k: v for k, v in {"steps": args.distill_steps, "data": args.data}.items() if v})
    config = None if args.model else preset_with_plan(
        args.preset or "small", args.plan, "training takes one plan (step-aware plans are chosen after training)")
    with session(args.dist_timeout):  # a process group when torchrun launched us, else nothing
        run_training(config, args.out, stages, vae, teacher, distill, ship_to=args.ship, start_from=args.model)
    return 0


def _config_for_table(config, table, table_path: str):
    """The model config at the table's resolution; a table for another preset is an error."""
    h = table.header
    if h["preset"] != config.name:
        raise SDKError(f"{table_path}: the table was made for preset {h['preset']!r}, the model is {config.name!r}")
    r = h["resolution"]
    return replace(config, height=r["height"], width=r["width"], num_frames=r["num_frames"])


def cmd_search(args) -> int:
    from mobile_sdk.config import load_preset

    from export.nas.genome import parse_space
    from export.nas.latency_table import load_table
    from export.nas.model_blocks import model_blocks
    from export.nas.efficiency_predictor import LatencyPredictor
    from export.nas.search_algorithm import Constraint, ProxyObjective, SearchConfig, evolutionary_search
    from export.nas.search_outputs import write_search_outputs

    axes = parse_space(args.space)
    if args.resolutions and "resolution" not in axes:
        raise SDKError("--resolutions needs the resolution axis (--space ...,resolution)")
    table = load_table(args.table)
    if axes != ("temporal",):
        return _search_space(args, axes, table)
    if args.objective == "rollout":
        raise SDKError("--objective rollout: only with --space width, depth or resolution")
    if args.supernet:
        from export.nas.accuracy_predictor import SupernetEvaluator

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
    _print_summary(args, table, summary, "plans")
    return 0


def _print_summary(args, table, summary: dict, what: str) -> None:
    p = summary["predicted"]
    print(f"wrote {args.out} (+ .pareto.json, .pareto.png): {summary['evaluations']} {what} evaluated")
    print(f"predicted ({table.provenance['kind'].upper()} table): denoising {p['denoise_ms']:.3f} ms "
          f"(budget {args.budget_ms:g}), end to end {p['end_to_end_ms']:.3f} ms, peak {p['peak_memory_mb']:.1f} MB; "
          f"{summary['objective']}: {summary['loss']:.5f}")


def _search_space(args, axes: tuple[str, ...], table) -> int:
    """`--space` beyond temporal: genomes of plan, sub-network and resolution (export.nas.genome), ranked by
    the shared-weight loss (`elastic_forward`) of the supernet, or of the model itself without one."""
    import numpy as np

    from export.nas.accuracy_predictor import ElasticEvaluator, RolloutEvaluator
    from export.nas.efficiency_predictor import ElasticPredictor
    from export.nas.genome import GenomeSpace, parse_resolution
    from export.nas.model_blocks import elastic_blocks
    from export.nas.search_algorithm import ElasticConstraint, SearchConfig, evolutionary_search
    from export.nas.search_outputs import genome_steps, write_elastic_outputs

    if args.supernet:
        from export.nas.supernet import load_supernet
        from export.nas.supernet_train import trained_base_weight

        net, pipe, meta = load_supernet(args.supernet)
        cache, held_out, seed, timesteps = Path(args.supernet), meta["held_out_clips"], meta["seed"], meta["timesteps"]
        source, weights = "supernet", "(shared weights, elastic)"
        base_weight = trained_base_weight(meta)
    else:
        from mobile_sdk.pipeline import VideoPipeline
        from mobile_sdk.weights import default_model_dir

        pipe = VideoPipeline.from_pretrained(args.model or default_model_dir())
        net, held_out, seed, timesteps = pipe.unet, 16, 0, list(pipe.scheduler.timesteps)
        cache = Path(args.out).with_name(Path(args.out).stem + ".held_out")
        source, weights = "model", "(its own weights sliced, no elastic training)"
        base_weight = 0.0
    if args.preset and pipe.config.name != args.preset:
        raise SDKError(f"--preset {args.preset} does not match the model ({pipe.config.name})")
    config = _config_for_table(pipe.config, table, args.table)
    if "resolution" in axes:
        listed = args.resolutions.split(",") if args.resolutions else None
        resolutions = ([parse_resolution(r) for r in listed] if listed else
                       [tuple(r) for r in table.header.get("elastic", {}).get("resolutions", [])]
                       or [(config.height, config.width)])
    else:
        resolutions = [(config.height, config.width)]
    try:
        blocks = elastic_blocks(config, resolutions)
    except SDKError as e:
        raise SDKError(f"--resolutions: {e}") from None
    space = GenomeSpace(config.unet, blocks.resolutions, axes)
    predictor = ElasticPredictor(table, blocks, space, args.table)
    constraint = ElasticConstraint(predictor, args.budget_ms, args.memory_mb * 2**20 if args.memory_mb else None)
    if (args.objective or "rollout") == "rollout":
        label = f"{source} {len(timesteps)}-step rollout error vs the base model {weights}"
        objective = RolloutEvaluator.from_model(net, pipe, space, cache, held_out, seed, timesteps, label,
                                                scheduler=pipe.scheduler)
    else:
        objective = ElasticEvaluator.from_model(net, pipe, space, cache, held_out, seed, timesteps,
                                               f"{source} validation loss {weights}", base_weight=base_weight)
    print(f"latency table: {table.describe()}")
    print(f"space: {', '.join(axes)} ({space.genes} genes per step; resolutions "
          f"{', '.join(f'{h}x{w}' for h, w in space.resolutions if 'resolution' in axes or (h, w) == space.resolutions[0])})")
    cfg = SearchConfig(population=args.population, generations=args.generations, seed=args.seed)
    result = evolutionary_search(objective, constraint, 1, cfg, seeds=[space.default_row()[None]])  # the full model
    extra = {"supernet": str(args.supernet) if args.supernet else None, "model": None if args.supernet else str(args.model or "shipped demo model")}
    if args.step_aware:
        # Seed the per-step search with the uniform search's Pareto front (each repeated at every step): the
        # best single sub-network is in its first population, so the result is never worse at this budget.
        uniform = result
        seeds = [np.repeat(r["codes"], predictor.steps, 0) for r in uniform.pareto_front()[::-1]]
        result = evolutionary_search(objective, constraint, predictor.steps, cfg, seeds=seeds)
        extra["best_uniform"] = {"loss": uniform.best_loss, "latency_ms": uniform.best_latency_ms,
                                 "steps": genome_steps(uniform.best, space, predictor.steps)[:1],
                                 "evaluations": uniform.evaluations}
    summary = write_elastic_outputs(result, constraint, objective.label, args.out, extra=extra)
    _print_summary(args, table, summary, "genomes")
    for i, step in enumerate(summary["steps"] if args.step_aware else summary["steps"][:1]):
        r = step["resolution"]
        print(f"{f'step {i}' if args.step_aware else 'every step'}: widths {step['subnet']['widths']}, up blocks {step['subnet']['up_blocks']}, transformer "
              f"depths {step['subnet']['transformer_depths']}, mid {step['subnet']['mid_block']}, {r['height']}x{r['width']}, "
              f"{sum(op != 'none' for op in step['plan'].values())} temporal layers")
    if args.step_aware:
        print(f"best uniform sub-network: {objective.label} {extra['best_uniform']['loss']:.5f} "
              f"(step-aware {summary['loss']:.5f})")
    return 0


def cmd_supernet_train(args) -> int:
    from mobile_sdk.weights import default_model_dir

    from export.nas.supernet_train import SupernetTrainConfig, train_supernet
    from export.train.distributed import rank_and_world, session

    from export.nas.sampling_space import parse_space

    over = {"steps": args.steps, "batch_size": args.batch_size, "warmup_steps": args.warmup_steps, "buckets": args.buckets,
            "space": parse_space(args.space) if args.space else None, "random_per_step": args.random_per_step,
            "resolutions": _resolutions(args.resolutions) if args.resolutions else None}
    cfg = SupernetTrainConfig(**{k: v for k, v in over.items() if v is not None})
    with session(args.dist_timeout):  # a process group when torchrun launched us, else nothing
        report = train_supernet(args.model or default_model_dir(), args.out, cfg)
    if rank_and_world()[0] == 0:
        print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))
    return 0


def _resolutions(text: str) -> tuple[tuple[int, int], ...]:
    """`--resolutions 32x32,64x64` -> ((32, 32), (64, 64))."""
    from export.nas.genome import parse_resolution

    return tuple(parse_resolution(item.strip()) for item in text.split(","))


def cmd_supernet_extract(args) -> int:
    from mobile_sdk.config import read_json
    from mobile_sdk.errors import ConfigError
    from mobile_sdk.plan import load_plan_file

    from export.nas.elastic import SubNet
    from export.nas.supernet import extract_model

    plan = load_plan_file(args.plan).single("supernet extract writes one model") if args.plan else None
    subnet = SubNet.from_dict(read_json(args.subnet, ConfigError, "sub-network"), args.subnet) if args.subnet else None
    resolution = _resolutions(args.resolution)[0] if args.resolution else None
    pipe = extract_model(args.supernet, args.out, plan, subnet, resolution)
    print(f"wrote {args.out}: {pipe.config.height}x{pipe.config.width}, "
          f"{sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.2f} M UNet parameters")
    return 0


def cmd_supernet_rank(args) -> int:
    from export.nas.supernet_rank import rank_check

    report = rank_check(args.supernet, args.out or Path(args.supernet) / "rank", args.plans, args.steps, args.seed)
    for r in report["rows"]:
        print(f"bucket {r['cost_bucket']}: supernet {r['supernet_loss']:.5f}  alone {r['standalone_loss']:.5f}")
    print(f"Kendall tau {report['kendall_tau']:.3f}, Spearman rho {report['spearman_rho']:.3f} over {report['plans']} plans")
    return 0


def cmd_supernet_evaluate(args) -> int:
    from export.nas.schedule_eval import evaluate_schedules, format_table

    for plan in args.plan or []:
        if not Path(plan).is_file():
            raise SDKError(f"{plan}: no such search result")
    out = Path(args.out or Path(args.supernet) / "schedules")
    report = evaluate_schedules(args.supernet, [None, *(args.plan or [])], out, args.finetune_steps, args.rounds,
                                args.seed)
    print(format_table(report))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


def add_parsers(sub) -> None:
    """export, import, train, search, supernet."""
    e = sub.add_parser("export", help="lower a model to a package (.mobilepkg) for the apps")
    add_model_args(e)
    e.add_argument("--target", action="append", choices=["executorch", "coreml"], default=None,
                   help="repeat for several targets (default: executorch)")
    e.add_argument("--quantize", default="none",
                   help="none | int8 (ExecuTorch) | palettize4|palettize6|palettize8|linear8 | "
                        "palettize-mixed<bits> (Core ML; mixed bits per weight for that average, e.g. "
                        "palettize-mixed3.5); one of each with a comma, e.g. int8,palettize6")
    e.add_argument("--calibration-prompts", type=cli_types.count, default=8, metavar="N",
                   help="int8: pipeline runs whose UNet and decoder calls set the activation ranges (default 8; "
                        "each is a 4-step generation on the observing modules: 3.6 min at snapgen-v-0.6b on 2 cores)")
    e.add_argument("--coreml-target", choices=["iOS17", "iOS18"],
                   help="minimum deployment target (default: iOS17, or iOS18 when multifunction models or mixed-bit "
                        "palettization, which uses 3-bit tables, are needed)")
    e.add_argument("--size", "--coreml-size", action="append", dest="size", metavar="[Fx]HxW",
                   help="a size the package serves besides the model's own (frames default to the model's): a UNet "
                        "method per plan and a decoder method at it, in every target; repeatable")
    e.add_argument("--check", action="store_true", help="parity gate: PSNR of every component and the 4-step pipeline")
    e.add_argument("--zip", action="store_true", help="also write PKG.zip")
    e.add_argument("--out", required=True, help="NAME.mobilepkg")
    e.add_argument("--overwrite", action="store_true", help="replace the package already at --out (never anything else)")
    e.add_argument("--low-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="lower each ExecuTorch component in a process of its own after releasing the weights "
                        "(default: when the UNet's fp32 weights pass 1 GiB, e.g. snapgen-v-0.6b)")
    e.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None,
                   help="with --low-memory, start the workers at once, beside the eager test vectors, instead of "
                        "after them (default: when the available memory holds a worker beside this process)")
    e.set_defaults(func=cmd_export)

    from export.convert.commands import add_import_parser

    add_import_parser(sub)

    t = sub.add_parser("train", help="train a preset from scratch (VAE, teacher, 4-step distillation) or a model folder's "
                                      "temporal layers, on synthetic data")
    t.add_argument("stage", choices=["all", "vae", "teacher", "distill", "evaluate"])
    t.add_argument("--preset", help="model preset trained from scratch (default: small)")
    t.add_argument("--plan", metavar="FILE", help="temporal plan to train instead of the preset's")
    t.add_argument("--model", metavar="DIR",
                   help="start from this model folder (e.g. from mobile-sdk import) on its own objective and size; "
                        "no VAE stage")
    t.add_argument("--trainable", choices=["all", "temporal"],
                   help="teacher stage: what learns (default: temporal with --model, as SnapGen-V trains an image "
                        "model's new temporal layers; all for a preset)")
    t.add_argument("--data", metavar="CLIPS.jsonl",
                   help='your own captioned clips, one {"video": PATH, "caption": TEXT} a line (default: the synthetic data)')
    t.add_argument("--out", default="runs/small", help="run folder (stages resume from their checkpoints)")
    t.add_argument("--vae-steps", type=cli_types.count)
    t.add_argument("--teacher-steps", type=cli_types.count)
    t.add_argument("--batch-size", type=cli_types.count,
                   help="teacher batch size: the global batch, split over the ranks under torchrun")
    t.add_argument("--distill-steps", type=cli_types.count)
    t.add_argument("--ship", metavar="DIR", help="write the distilled model (fp16) here when done")
    t.add_argument("--fsdp", action="store_true",
                   help="under torchrun: shard the teacher over the ranks with FSDP2 (for models one device cannot hold)")
    _distributed_args(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("search", help="evolutionary temporal-placement search under a latency (and memory) budget")
    s.add_argument("--preset", help="model preset (default: the supernet's model; required without --supernet)")
    s.add_argument("--table", required=True, help="latency table JSON (mobile-sdk profile ...)")
    s.add_argument("--budget-ms", type=cli_types.positive_float, required=True, help="predicted latency of the whole denoising loop")
    s.add_argument("--memory-mb", type=cli_types.positive_float, help="peak memory limit")
    s.add_argument("--step-aware", action="store_true", help="one plan (and sub-network) per denoising step (DDSM)")
    s.add_argument("--space", default="temporal",
                   help="axes searched, comma-separated from temporal, width, depth, resolution (default: temporal)")
    s.add_argument("--resolutions", metavar="HxW,...",
                   help="with the resolution axis: pixel sizes to choose from (default: those the table lists)")
    s.add_argument("--supernet", metavar="DIR", help="trained supernet (quality signal); without it a labelled proxy ranks plans")
    s.add_argument("--model", metavar="DIR",
                   help="without --supernet, for width/depth/resolution: the model whose sliced weights rank "
                        "sub-networks (default: the shipped demo model)")
    s.add_argument("--objective", choices=["rollout", "step-loss"],
                   help="with width/depth/resolution: rank by the error of the whole few-step rollout against the "
                        "base model's (rollout, the default) or by the held-out loss of each step on noised data "
                        "(step-loss, the temporal search's only objective)")
    s.add_argument("--population", type=cli_types.count, default=32)
    s.add_argument("--generations", type=cli_types.count, default=20)
    s.add_argument("--seed", type=cli_types.seed, default=0)
    s.add_argument("--out", required=True, help="PLAN.json (feeds export --plan)")
    s.set_defaults(func=_require_preset_without_supernet(cmd_search))

    n = sub.add_parser("supernet", help="weight-sharing supernet over temporal placements and sizes (SNED, DDSM)")
    ns = n.add_subparsers(dest="supernet_command", required=True)
    t = ns.add_parser("train", help="train every candidate temporal op on a frozen backbone (resumable)")
    t.add_argument("--model", metavar="DIR", help="base model folder (default: the shipped demo model)")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=cli_types.count)
    t.add_argument("--batch-size", type=cli_types.count, help="the global batch, split over the ranks under torchrun")
    t.add_argument("--warmup-steps", type=cli_types.count, help="sampling warm-up (largest plan dominates early)")
    t.add_argument("--buckets", type=cli_types.count, help="cost buckets for dynamic cost sampling")
    t.add_argument("--space", metavar="AXES",
                   help="comma-separated axes of temporal, width, depth, resolution (default: temporal, the frozen-backbone "
                        "supernet; any other axis trains the backbone too, with the sandwich rule)")
    t.add_argument("--resolutions", metavar="HxW,...",
                   help="with the resolution axis: pixel sizes drawn per step (default: the model's size and one "
                        "pixel multiple below and above)")
    t.add_argument("--random-per-step", type=cli_types.nonneg_count,
                   help="sandwich: random sub-networks per step besides the largest and the smallest (default 2)")
    _distributed_args(t)
    t.set_defaults(func=cmd_supernet_train)
    x = ns.add_parser("extract", help="write a sub-network (plan, width/depth, resolution) as an ordinary model folder")
    x.add_argument("--supernet", required=True)
    x.add_argument("--plan", metavar="FILE", help="one temporal plan (default: the base model's)")
    x.add_argument("--subnet", metavar="FILE",
                   help='JSON {"widths": [...], "up_blocks": [...], "transformer_depths": [...], "mid_block": bool} '
                        "(default: full width and depth)")
    x.add_argument("--resolution", metavar="HxW", help="pixel size the model generates at (default: the base model's)")
    x.add_argument("--out", required=True, help="model folder")
    x.set_defaults(func=cmd_supernet_extract)
    r = ns.add_parser("rank-check", help="rank correlation: supernet losses vs plans trained alone")
    r.add_argument("--supernet", required=True)
    r.add_argument("--plans", type=cli_types.count, default=5)
    r.add_argument("--steps", type=cli_types.count, default=300, help="training steps of each plan alone")
    r.add_argument("--seed", type=cli_types.seed, default=0)
    r.add_argument("--out")
    r.set_defaults(func=cmd_supernet_rank)
    v = ns.add_parser("evaluate", help="the full model against searched schedules: each extracted, fine-tuned the "
                                       "same, exported and measured (latency, UNet GFLOPs, quality on 60 prompts)")
    v.add_argument("--supernet", required=True)
    v.add_argument("--plan", action="append", metavar="PLAN.json",
                   help="a search result (mobile-sdk search --space ...); repeatable; the full model is always the first row")
    v.add_argument("--finetune-steps", type=cli_types.nonneg_count, default=100,
                   help="steps of the short fine-tune every sub-network gets (default 100)")
    v.add_argument("--rounds", type=cli_types.count, default=5, help="interleaved latency rounds (default 5)")
    v.add_argument("--seed", type=cli_types.seed, default=0)
    v.add_argument("--out", help="report folder (default: SUPERNET/schedules)")
    v.set_defaults(func=cmd_supernet_evaluate)


def _distributed_args(p) -> None:
    """Options of the training commands that matter only under torchrun (README: Training on several processes)."""
    p.add_argument("--dist-timeout", type=cli_types.positive_float, default=1800, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others in a collective before it stops "
                        "with an error (default 1800)")


def _require_preset_without_supernet(fn):
    def run(args):
        if not args.supernet and not args.preset:
            raise SDKError("search needs --preset when no --supernet is given")
        return fn(args)
    return run
