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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="DIR", help="a model folder written by save_pretrained")
    src.add_argument("--preset", metavar="NAME", help="a preset (random weights): tiny, small, snapgen-v-0.6b")
    p.add_argument("--plan", metavar="FILE", help="temporal plan JSON ({\"slots\": {...}}) to use instead of the preset's")


def _load_config(args):
    from .config import load_preset
    from .plan import TemporalPlan, load_plan_spec

    if args.model:
        if args.plan:
            raise SDKError("--plan applies to --preset; a trained model folder already fixes its plan")
        from .pipeline import VideoPipeline

        return VideoPipeline.from_pretrained(args.model)
    cfg = load_preset(args.preset or "small")
    if args.plan:
        from dataclasses import replace

        spec = load_plan_spec(args.plan)
        TemporalPlan.resolve(spec, cfg.unet, source=args.plan)  # report errors against the file's name
        cfg = replace(cfg, unet=replace(cfg.unet, temporal_plan=spec))
    return cfg


def cmd_generate(args) -> int:
    import torch

    from .pipeline import VideoPipeline
    from .video_io import export_to_video

    loaded = _load_config(args)
    pipe = loaded if isinstance(loaded, VideoPipeline) else VideoPipeline.from_config(loaded, seed=args.seed)
    if not pipe.trained:
        print(f"note: model {pipe.config.name!r} has untrained (random) weights; expect noise, not a video of the prompt",
              file=sys.stderr)
    generator = torch.Generator().manual_seed(args.seed)
    out = pipe(args.prompt, num_inference_steps=args.steps, num_frames=args.frames, height=args.height,
               width=args.width, generator=generator)
    path = export_to_video(out.frames[0], args.out, fps=args.fps or pipe.config.fps)
    t = out.timings_ms
    print(f"wrote {path} ({out.frames.shape[1]} frames, {out.frames.shape[3]}x{out.frames.shape[2]}); "
          f"text encoder {t['text_encoder_ms']:.0f} ms, denoising {t['denoise_ms']:.0f} ms, "
          f"decoder {t['vae_decoder_ms']:.0f} ms")
    return 0


def cmd_inspect(args) -> int:
    from .summary import format_summary, model_summary

    if args.path:
        from .pipeline import VideoPipeline

        if not Path(args.path).is_dir():
            raise SDKError(f"{args.path}: not a folder (expected a model folder)")
        config = VideoPipeline.from_pretrained(args.path).config
    else:
        loaded = _load_config(args)
        config = loaded.config if hasattr(loaded, "config") else loaded
    summary = model_summary(config)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mobile-sdk", description="On-device video diffusion SDK")
    parser.add_argument("--version", action="version", version=f"mobile-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a video from a prompt")
    g.add_argument("--prompt", required=True)
    _add_model_args(g)
    g.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    g.add_argument("--height", type=int)
    g.add_argument("--width", type=int)
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's, 4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--fps", type=int)
    g.add_argument("--out", default="out/video.mp4", help="output .mp4 or .gif")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("inspect", help="summarise a model: components, parameters, slots, plan")
    i.add_argument("path", nargs="?", help="a model folder")
    _add_model_args(i)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_inspect)
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
