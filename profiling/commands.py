"""`mobile-sdk profile ...` subcommands (the CLI imports this module only when profiling)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mobile_sdk import cli_types
from mobile_sdk.errors import SDKError

# Heavier imports (torch, executorch, the export layer) happen inside the subcommands, so that building
# the CLI parser stays cheap.


def config_at(preset: str, height: int | None, width: int | None, frames: int | None):
    """The preset's config at another resolution or frame count (tables are per shape)."""
    from mobile_sdk.config import load_preset

    cfg = load_preset(preset)
    cfg = replace(cfg, height=height or cfg.height, width=width or cfg.width, num_frames=frames or cfg.num_frames)
    cfg.check_size(cfg.height, cfg.width, cfg.num_frames, f"preset {preset}")
    return cfg


def _config(args):
    return config_at(args.preset, args.height, args.width, args.frames)


def _blocks(args):
    from export.nas.model_blocks import model_blocks

    return model_blocks(_config(args))


def _resolutions(args) -> list[tuple[int, int]]:
    """`--resolutions 32x32,16x16` -> [(32, 32), (16, 16)] ([] without the flag)."""
    from export.nas.genome import parse_resolution

    try:
        return [parse_resolution(r.strip()) for r in args.resolutions.split(",")] if args.resolutions else []
    except SDKError as e:
        raise SDKError(f"--resolutions: {e}") from None


def _elastic(cfg, resolutions: list[tuple[int, int]]):
    """Every elastic sub-network's blocks at the model's own size and `resolutions`."""
    from export.nas.model_blocks import elastic_blocks

    try:
        return elastic_blocks(cfg, [(cfg.height, cfg.width)] + resolutions)
    except SDKError as e:
        raise SDKError(f"--resolutions: {e}") from None


def _table_blocks(args):
    """What a table holds: the preset's model, or with --resolutions every elastic sub-network's blocks at
    its own size and those (the table's header.elastic then lists them for `search --space`)."""
    resolutions = _resolutions(args)
    return _elastic(_config(args), resolutions) if resolutions else _blocks(args)


def _full_model(blocks):
    """The preset's own model out of a table's blocks (elastic tables cover it at their first size)."""
    from export.nas.elastic import SubNet
    from export.nas.model_blocks import ElasticBlocks

    if isinstance(blocks, ElasticBlocks):
        return blocks.of(SubNet.full(blocks.config.unet), blocks.resolutions[0])
    return blocks


def _measure(args, device, tool: str) -> int:
    from .harness import profile

    blocks = _table_blocks(args)
    out = Path(args.out)
    table = profile(blocks, device, out, preset=args.preset, quantize=args.quantize, threads=args.threads,
                    warmup=args.warmup, runs=args.runs, rounds=args.rounds, etdump_dir=out.with_name(out.stem + ".etdump"),
                    tool=tool)
    _report(args, blocks, table, out)
    return 0


def _report(args, blocks, table, out: Path, prefix: str = "") -> None:
    """The table's per-op breakdown of one UNet call and the prediction for the preset's plan."""
    from export.nas.efficiency_predictor import LatencyPredictor

    from .breakdown import write_breakdown
    from .microbench import program_filename

    etdumps = out.with_name(out.stem + ".etdump")
    blocks = _full_model(blocks)
    predictor = LatencyPredictor(table, blocks, str(out))
    default = predictor.predict(blocks.config.unet.temporal_plan)
    uses = blocks.uses(blocks.config.unet.temporal_plan)
    dumps = {sig: etdumps / program_filename(sig, ".etdp") for sig in uses}
    page = write_breakdown(uses, {s: p for s, p in dumps.items() if p.exists()}, out.with_name(out.stem + ".breakdown"),
                           f"{args.preset} UNet call, default plan ({table.header['device']['model']})")
    print(f"{prefix}wrote {out} ({len(table.entries)} entries, {table.describe()})")
    print(f"{prefix}per-op breakdown: {page}")
    print(f"{prefix}predicted for the preset's plan: {json.dumps(default.to_dict())}")


def cmd_host(args) -> int:
    from .devices import HostDevice

    return _measure(args, HostDevice(), "mobile-sdk profile host (et_bench_runner over the ExecuTorch Module API)")


def cmd_android(args) -> int:
    """One phone, or several in parallel (one table each, see profiling/multi_device.py)."""
    from .devices import AdbDevice
    from .multi_device import profile_devices, shared_programs_dir, tables_per_serial

    outs = tables_per_serial(args.out, args.serial)
    devices = {s: AdbDevice(s, Path(args.runner), [Path(p) for p in args.runner_lib or []], adb=args.adb) for s in outs}
    blocks = _table_blocks(args)
    tables, errors = profile_devices(blocks, devices, outs, shared_programs_dir(args.out), preset=args.preset,
                                     quantize=args.quantize, threads=args.threads, warmup=args.warmup, runs=args.runs,
                                     rounds=args.rounds,
                                     tool="mobile-sdk profile android (et_bench_runner over adb, serial {serial})")
    for serial, table in tables.items():
        _report(args, blocks, table, outs[serial], prefix=f"[{serial}] " if len(outs) > 1 else "")
    if errors:
        raise SDKError("; ".join(f"{s}: {e} ({outs[s]} keeps what was measured; rerun to resume)" for s, e in errors.items()))
    return 0


def cmd_android_e2e(args) -> int:
    from .devices import Adb
    from .e2e import run_engine_benchmark

    result = run_engine_benchmark(Adb(args.serial, args.adb), Path(args.engine), [Path(p) for p in args.engine_lib or []],
                                  Path(args.package), args.prompt, args.seed, args.warmup, args.runs, args.threads,
                                  Path(args.out))
    m = result["metrics"]
    print(f"wrote {args.out}: {result['device']['model']}, load {m['model_load_time(ms)']:.0f} ms, "
          f"generation {m['trimmean_inference_latency(ms)']:.0f} ms (trimmed mean of {result['runs']}), "
          f"peak RSS {m['peak_rss(mb)']} MB")
    return 0


def cmd_ingest(args) -> int:
    from export.nas.latency_table import save_table

    from .ingest import ingest_results

    table = ingest_results(args.results)
    save_table(table, args.out)
    print(f"wrote {args.out} ({len(table.entries)} entries, {table.describe()})")
    return 0


def cmd_coreml_programs(args) -> int:
    from .coreml_bench import build_coreml_programs

    index = build_coreml_programs(_blocks(args), args.out, preset=args.preset)
    print(f"wrote Core ML micro-models and {index} (copy the folder into the iOS demo app's benchmark bundle)")
    return 0


def cmd_coreml(args) -> int:
    from export.nas.latency_table import save_table

    from .coreml_bench import time_coreml_programs
    from .ingest import ingest_results

    results = Path(args.out).with_suffix(".results.json")
    time_coreml_programs(args.programs, results, args.compute_units, args.warmup, args.runs)
    table = ingest_results(results)
    save_table(table, args.out)
    print(f"wrote {args.out} ({len(table.entries)} entries, {table.describe()})")
    return 0


def cmd_estimate(args) -> int:
    from export.nas.latency_table import save_table
    from export.nas.efficiency_predictor import LatencyPredictor

    from .estimate import estimate_table

    blocks = _table_blocks(args)
    table = estimate_table(blocks, args.device, args.preset)
    save_table(table, args.out)
    model = _full_model(blocks)
    pred = LatencyPredictor(table, model, args.out).predict(model.config.unet.temporal_plan)
    print(f"wrote {args.out} ({len(table.entries)} entries): {table.describe()}")
    print(f"ESTIMATE for the preset's plan: {json.dumps(pred.to_dict())}")
    return 0


def cmd_validate(args) -> int:
    """Random plans of the preset's model, or with --space random genomes of the whole space (each
    sub-network extracted and lowered whole), measured here against the table's prediction."""
    from export.nas.genome import GenomeSpace, parse_space
    from mobile_sdk.plan import load_plan_file

    from .devices import HostDevice
    from .validate import validate, validate_space

    axes = parse_space(args.space)
    resolutions = _resolutions(args)
    if resolutions and "resolution" not in axes:
        raise SDKError("--resolutions needs the resolution axis (--space ...,resolution)")
    if args.plan_file and axes != ("temporal",):
        raise SDKError("--plan-file measures the preset's model under given plans; it does not combine with "
                       f"--space {args.space}")
    table = _host_table(args.table)
    out = args.out or str(Path(args.table).with_name(Path(args.table).stem + ".validate"))
    if axes == ("temporal",):
        plans = [load_plan_file(f) for f in args.plan_file] if args.plan_file else None
        validate(_blocks(args), table, HostDevice(), out, n_plans=args.plans, plans=plans, seed=args.seed)
        return 0
    cfg = _config(args)
    if "resolution" in axes and not resolutions:  # as `search` does: the sizes the table was made for
        resolutions = [tuple(r) for r in table.header.get("elastic", {}).get("resolutions", [])]
    blocks = _elastic(cfg, resolutions)
    validate_space(blocks, table, HostDevice(), out, GenomeSpace(cfg.unet, blocks.resolutions, axes), n=args.plans,
                   seed=args.seed)
    return 0


def cmd_calibrate(args) -> int:
    from export.nas.latency_table import save_table

    from .devices import HostDevice
    from .validate import calibrate

    table = _host_table(args.table)
    out = Path(args.table).with_name(Path(args.table).stem + ".calibrate")
    table.header["calibration"] = calibrate(_blocks(args), table, HostDevice(), out, n_plans=args.plans, seed=args.seed)
    save_table(table, args.table)
    print(f"updated {args.table}: UNet calls are scaled by {table.header['calibration']['unet_call_scale']:.3f}")
    return 0


def _host_table(path: str):
    from export.nas.latency_table import load_table

    table = load_table(path)
    if table.provenance["kind"] != "measured" or not table.header["device"]["model"].startswith("host"):
        raise SDKError(f"{path}: this measures on this host, so it needs a table measured here "
                       f"(this one is {table.describe()})")
    return table


def add_profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="latency tables: measure (host, Android), ingest (iOS), estimate, validate")
    ps = p.add_subparsers(dest="profile_command", required=True)

    TABLE_RESOLUTIONS = ("also every elastic sub-network's blocks (width, depth; export.nas.elastic), at the model's "
                         "size and these (for search --space ...,width,depth,resolution)")

    def shape_args(q, out_required=True, resolutions_help=None):
        q.add_argument("--preset", default="small")
        q.add_argument("--height", type=cli_types.count, help="pixels (default: the preset's)")
        q.add_argument("--width", type=cli_types.count)
        q.add_argument("--frames", type=cli_types.count)
        q.add_argument("--out", required=out_required, help="table JSON")
        if resolutions_help:
            q.add_argument("--resolutions", metavar="HxW,...", help=resolutions_help)

    def measure_args(q):
        shape_args(q, resolutions_help=TABLE_RESOLUTIONS)
        q.add_argument("--quantize", choices=["none", "int8"], default="none")
        q.add_argument("--threads", type=cli_types.count, help="runtime threads (default: all cores)")
        q.add_argument("--warmup", type=cli_types.nonneg_count, default=5)
        q.add_argument("--runs", type=cli_types.count, default=20, help="timed runs per runner process")
        q.add_argument("--rounds", type=cli_types.count, default=5, help="runner processes per entry (their median is kept)")

    h = ps.add_parser("host", help="measure every table entry on this machine (resumable)")
    measure_args(h)
    h.set_defaults(func=cmd_host)
    a = ps.add_parser("android", help="measure on a phone over adb with the NDK-built runner (resumable)")
    measure_args(a)
    a.add_argument("--serial", required=True, action="append",
                   help="adb serial; repeat to measure several phones in parallel (then --out needs {serial})")
    a.add_argument("--runner", required=True, help="et_bench_runner built for Android (see profiling/README.md)")
    a.add_argument("--runner-lib", action="append", help="shared library the runner needs on the device; repeatable")
    a.add_argument("--adb", default="adb")
    a.set_defaults(func=cmd_android)
    e2e = ps.add_parser("android-e2e", help="end-to-end benchmark of a package on a phone: the engine CLI over adb")
    e2e.add_argument("--serial", required=True)
    e2e.add_argument("--engine", required=True, help="mvd_engine_cli built for Android (see mobile_sdk/engine/README.md)")
    e2e.add_argument("--engine-lib", action="append", help="shared library the engine needs on the device; repeatable")
    e2e.add_argument("--package", required=True, help="a NAME.mobilepkg folder")
    e2e.add_argument("--prompt", default="a red circle moving right")
    e2e.add_argument("--seed", type=cli_types.seed, default=7)
    e2e.add_argument("--threads", type=cli_types.count, help="XNNPACK threads (default: the engine's)")
    e2e.add_argument("--warmup", type=cli_types.nonneg_count, default=1)
    e2e.add_argument("--runs", type=cli_types.count, default=5)
    e2e.add_argument("--adb", default="adb")
    e2e.add_argument("--out", required=True, help="pipeline-benchmark result JSON")
    e2e.set_defaults(func=cmd_android_e2e)
    i = ps.add_parser("ingest", help="turn Core ML benchmark results (iOS demo app) into a table")
    i.add_argument("results")
    i.add_argument("--out", required=True)
    i.set_defaults(func=cmd_ingest)
    cp = ps.add_parser("coreml-programs", help="build the Core ML micro-models the iOS app benchmarks")
    shape_args(cp)
    cp.set_defaults(func=cmd_coreml_programs)
    c = ps.add_parser("coreml", help="macOS: time Core ML micro-models with coremltools and write a table")
    c.add_argument("--programs", required=True, help="folder from `profile coreml-programs`")
    c.add_argument("--compute-units", default="cpuAndNeuralEngine", choices=["all", "cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine"])
    c.add_argument("--warmup", type=cli_types.nonneg_count, default=5)
    c.add_argument("--runs", type=cli_types.count, default=20)
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_coreml)
    e = ps.add_parser("estimate", help="write an ESTIMATED table for a phone from a roofline model")
    shape_args(e, resolutions_help=TABLE_RESOLUTIONS)
    e.add_argument("--device", required=True, help="iphone-16-pro-max | snapdragon-8-elite (profiling/device_specs.json)")
    e.set_defaults(func=cmd_estimate)
    v = ps.add_parser("validate", help="predicted vs measured latency of random plans on this host")
    shape_args(v, out_required=False, resolutions_help="with --space ...,resolution: the sizes drawn besides the "
                                                                      "model's own (default: the table's header.elastic)")
    v.add_argument("--table", required=True)
    v.add_argument("--space", default="temporal",
                   help="axes drawn at random, comma-separated from temporal, width, depth, resolution (default: "
                        "temporal, the preset's model; the others extract each sub-network and lower it whole)")
    v.add_argument("--plans", type=cli_types.count, default=20,
                   help="how many random plans or genomes (the preset's own plan, full model, first)")
    v.add_argument("--plan-file", action="append", help="measure these plan files (e.g. search results) instead; repeatable")
    v.add_argument("--seed", type=cli_types.seed, default=0)
    v.set_defaults(func=cmd_validate)
    k = ps.add_parser("calibrate", help="fit the table's UNet-call correction on whole-UNet programs (this host)")
    shape_args(k, out_required=False)
    k.add_argument("--table", required=True, help="host table to update")
    k.add_argument("--plans", type=cli_types.count, default=8)
    k.add_argument("--seed", type=cli_types.seed, default=1000, help="keep apart from validate's seed")
    k.set_defaults(func=cmd_calibrate)
