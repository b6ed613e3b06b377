"""`mobile-sdk` console script. Errors are one line on stderr and exit code 2, never a traceback.

Subcommands that need the export or profiling layers import them inside the subcommand, so the
runtime side stays light.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import SDKError


def _add_model_args(p: argparse.ArgumentParser, supernet: bool = True) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="DIR", help="a model folder written by save_pretrained (default: the shipped demo model)")
    src.add_argument("--preset", metavar="NAME", help="a preset with random weights: tiny, small, snapgen-v-0.6b")
    if supernet:
        src.add_argument("--supernet", metavar="DIR", help="a trained supernet: its base model with the --plan sub-network")
    p.add_argument("--plan", metavar="FILE", help='temporal plan JSON: {"slots": {...}} or {"steps": [{"slots": ...}, ...]}')
    p.add_argument("--seed", type=int, default=0, help="seed (initial noise; also random weights of a preset)")


def load_pipeline(args):
    """The pipeline the model arguments name: --model DIR, --preset NAME, or the shipped demo model."""
    from .config import load_preset
    from .pipeline import VideoPipeline
    from .plan import TemporalPlan, load_plan_file
    from .weights import default_model_dir

    step_specs = load_plan_file(args.plan) if args.plan else None
    if getattr(args, "supernet", None):
        from export.supernet import supernet_pipeline

        return supernet_pipeline(args.supernet, step_specs)
    if args.preset:
        cfg = load_preset(args.preset)
        for i, spec in enumerate(step_specs or []):  # report errors against the file's name
            TemporalPlan.resolve(spec, cfg.unet, source=args.plan if len(step_specs) == 1 else f"{args.plan}: step {i}")
        if step_specs and len(step_specs) > 1 and len(step_specs) != cfg.scheduler.num_inference_steps:
            raise SDKError(f"{args.plan}: {len(step_specs)} step plans for a {cfg.scheduler.num_inference_steps}-step model")
        plan = step_specs if step_specs and len(step_specs) > 1 else (step_specs[0] if step_specs else None)
        return VideoPipeline.from_config(cfg, seed=args.seed, plan=plan)
    model_dir = args.model or default_model_dir()
    pipe = VideoPipeline.from_pretrained(model_dir)
    if step_specs:
        specs = step_specs * pipe.config.scheduler.num_inference_steps if len(step_specs) == 1 else step_specs
        pipe = pipe.with_step_plans(specs)
        if pipe.unet.untrained_layers:
            raise SDKError(f"{args.plan}: the model in {model_dir} has no trained weights for "
                           f"{', '.join(pipe.unet.untrained_layers)}; a trained model can only keep or drop ('none') its temporal layers")
    return pipe


def _preset_with_plan(preset: str, plan_file: str | None, one_plan_only: str):
    """A preset's config, with the single plan of `plan_file` (validated against the file's name) if given."""
    from dataclasses import replace

    from .config import load_preset
    from .plan import TemporalPlan, load_plan_file

    config = load_preset(preset)
    if not plan_file:
        return config
    specs = load_plan_file(plan_file)
    if len(specs) > 1:
        raise SDKError(f"{plan_file}: {one_plan_only}; this file has one plan per step")
    TemporalPlan.resolve(specs[0], config.unet, source=plan_file)
    return replace(config, unet=replace(config.unet, temporal_plan=specs[0]))


def cmd_generate(args) -> int:
    import torch

    from .video_io import export_to_video

    if args.package:
        if args.model or args.preset or args.plan or args.supernet:
            raise SDKError("--package already fixes the model and plan; drop --model/--preset/--supernet/--plan")
        from .runtime import pipeline_from_package

        pipe = pipeline_from_package(args.package)
    else:
        pipe = load_pipeline(args)
    if not pipe.trained:
        print(f"note: model {pipe.config.name!r} has untrained (random) weights; expect noise, not a video of the prompt",
              file=sys.stderr)
    generator = torch.Generator().manual_seed(args.seed)
    out = pipe(args.prompt, num_inference_steps=args.steps, num_frames=args.frames, height=args.height,
               width=args.width, generator=generator)
    path = export_to_video(out.frames[0], args.out, fps=args.fps or pipe.config.fps)
    t = out.timings_ms
    backend = f"package {args.package} (ExecuTorch)" if args.package else "eager PyTorch"
    print(f"wrote {path} ({out.frames.shape[1]} frames, {out.frames.shape[3]}x{out.frames.shape[2]}, {backend}); "
          f"text encoder {t['text_encoder_ms']:.0f} ms, denoising {t['denoise_ms']:.0f} ms, "
          f"decoder {t['vae_decoder_ms']:.0f} ms")
    return 0


def cmd_export(args) -> int:
    from export.package_writer import export_package

    pipe = load_pipeline(args)
    out = Path(args.out)
    if out.suffix != ".mobilepkg":
        raise SDKError(f"{out}: a package path must end in .mobilepkg")
    from export.coreml_lowering import CoreMLOptions

    sizes = []
    for text in args.coreml_size or []:
        try:
            f, h, w = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise SDKError(f"--coreml-size {text!r}: expected FRAMESxHEIGHTxWIDTH, e.g. 8x64x64") from None
        sizes.append((f, h, w))
    options = CoreMLOptions(deployment_target=args.coreml_target, extra_sizes=sizes)
    export_package(pipe, out, targets=tuple(dict.fromkeys(args.target or ["executorch"])), quantize=args.quantize,
                   check=args.check, make_zip=args.zip, preset=args.preset, coreml_options=options,
                   latency_table=_searched_table(args.plan))
    return 0


def _searched_table(plan_file: str | None) -> dict | None:
    """A plan written by `mobile-sdk search` records the table (and its provenance) it was chosen on."""
    from .config import read_json

    search = read_json(plan_file).get("search") if plan_file else None
    if not isinstance(search, dict):
        return None
    return {**search.get("table", {}), "predicted": search.get("predicted"), "objective": search.get("objective")}


def cmd_inspect(args) -> int:
    from .summary import format_summary, model_summary

    if args.path and Path(args.path).suffix in (".mobilepkg", ".zip"):
        from .package import open_package
        from .package_summary import format_package_summary, package_summary

        with open_package(args.path) as pkg:
            summary = package_summary(pkg)
        print(json.dumps(summary, indent=2) if args.json else format_package_summary(summary))
        return 0
    if args.path:
        args.model = args.path
    if args.preset:  # counted on the meta device: even the 0.6B preset costs nothing
        config = _preset_with_plan(args.preset, args.plan, "inspect shows one plan")
    else:
        config = load_pipeline(args).config
    summary = model_summary(config)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_train(args) -> int:
    from export.train.distill import DistillConfig
    from export.train.run import STAGES, run_training
    from export.train.teacher import TeacherTrainConfig
    from export.train.vae import VAETrainConfig

    stages = list(STAGES) if args.stage == "all" else [args.stage]
    vae = VAETrainConfig(**{k: v for k, v in {"steps": args.vae_steps}.items() if v})
    teacher = TeacherTrainConfig(**{k: v for k, v in {"steps": args.teacher_steps, "batch_size": args.batch_size}.items() if v})
    distill = DistillConfig(**{k: v for k, v in {"steps": args.distill_steps}.items() if v})
    config = _preset_with_plan(args.preset, args.plan, "training takes one plan (step-aware plans are chosen after training)")
    run_training(config, args.out, stages, vae, teacher, distill, ship_to=args.ship)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mobile-sdk", description="On-device video diffusion SDK")
    parser.add_argument("--version", action="version", version=f"mobile-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a video from a prompt")
    g.add_argument("--prompt", required=True)
    _add_model_args(g)
    g.add_argument("--package", metavar="PKG", help="run an exported package (.mobilepkg or .zip) with ExecuTorch on this host")
    g.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    g.add_argument("--height", type=int)
    g.add_argument("--width", type=int)
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's, 4)")
    g.add_argument("--fps", type=int)
    g.add_argument("--out", default="out/video.mp4", help="output .mp4 or .gif")
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("export", help="lower a model to a package (.mobilepkg) for the apps")
    _add_model_args(e)
    e.add_argument("--target", action="append", choices=["executorch", "coreml"], default=None,
                   help="repeat for several targets (default: executorch)")
    e.add_argument("--quantize", default="none",
                   help="none | int8 (ExecuTorch) | palettize4|palettize6|palettize8|linear8 (Core ML); "
                        "one of each with a comma, e.g. int8,palettize6")
    e.add_argument("--coreml-target", choices=["iOS17", "iOS18"],
                   help="minimum deployment target (default: iOS17, or iOS18 when multifunction models are needed)")
    e.add_argument("--coreml-size", action="append", metavar="FxHxW",
                   help="extra frames x height x width the Core ML models accept (as extra functions); repeatable")
    e.add_argument("--check", action="store_true", help="parity gate: PSNR of every component and the 4-step pipeline")
    e.add_argument("--zip", action="store_true", help="also write PKG.zip")
    e.add_argument("--out", required=True, help="NAME.mobilepkg")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("inspect", help="summarise a model or a package: components, parameters, slots, plan")
    i.add_argument("path", nargs="?", help="a model folder or a package (.mobilepkg / .zip)")
    _add_model_args(i, supernet=False)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_inspect)

    t = sub.add_parser("train", help="train the demo model on synthetic data (VAE, teacher, 4-step distillation)")
    t.add_argument("stage", choices=["all", "vae", "teacher", "distill", "evaluate"])
    t.add_argument("--preset", default="small")
    t.add_argument("--plan", metavar="FILE", help="temporal plan to train instead of the preset's")
    t.add_argument("--out", default="runs/small", help="run folder (stages resume from their checkpoints)")
    t.add_argument("--vae-steps", type=int)
    t.add_argument("--teacher-steps", type=int)
    t.add_argument("--batch-size", type=int, help="teacher batch size")
    t.add_argument("--distill-steps", type=int)
    t.add_argument("--ship", metavar="DIR", help="write the distilled model (fp16) here when done")
    t.set_defaults(func=cmd_train)

    try:  # the export and profiling layers' subcommands (their modules import heavy things lazily)
        from export.commands import add_search_parsers
        from profiling.commands import add_profile_parser
    except ImportError:  # a runtime-only install has neither layer
        pass
    else:
        add_search_parsers(sub)
        add_profile_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SDKError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
