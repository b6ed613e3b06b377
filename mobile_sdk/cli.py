"""`mobile-sdk` console script. Errors are one line on stderr and exit code 2, never a traceback.

The runtime's own subcommands (generate, inspect) are here; every other layer registers its own
(entry point group `mobile_sdk.commands`: export, train, search, supernet, profile, engine), so this
package never imports them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from . import cli_types
from .errors import SDKError
from .model_args import add_model_args, load_pipeline, preset_with_plan
from .quiet import quiet_third_party

COMMANDS = "mobile_sdk.commands"


def cmd_generate(args) -> int:
    import torch

    from .noise import portable_normal
    from .video_io import check_video_path, export_to_video

    check_video_path(args.out)
    with contextlib.ExitStack() as stack:  # an extracted zip package is removed on every path
        if args.package:
            if args.model or args.preset or args.plan or getattr(args, "supernet", None):
                raise SDKError("--package already fixes the model and plan; drop --model/--preset/--supernet/--plan")
            from .package import open_package
            from .runtime import pipeline_from_package

            pipe = pipeline_from_package(stack.enter_context(open_package(args.package)), num_frames=args.frames,
                                         height=args.height, width=args.width)
        else:
            pipe = load_pipeline(args)
        dropped = pipe.tokenizer.dropped_bytes(args.prompt)
        if dropped:
            print(f"note: the prompt is cut to the model's {pipe.tokenizer.max_length - 2} bytes; "
                  f"the last {dropped} byte(s) are not read", file=sys.stderr)
        if not pipe.trained:
            print(f"note: model {pipe.config.name!r} has untrained (random) weights; expect noise, not a video of the prompt",
                  file=sys.stderr)
        # the package's portable noise: the same seed gives the same video here, in the engine and in the apps
        noise = torch.from_numpy(portable_normal(args.seed, pipe.latent_shape(args.frames, args.height, args.width)))
        out = pipe(args.prompt, num_inference_steps=args.steps, num_frames=args.frames, height=args.height,
                   width=args.width, latents=noise)
        path = export_to_video(out.frames[0], args.out, fps=args.fps or pipe.config.fps)
    t = out.timings_ms
    backend = f"package {args.package} (ExecuTorch)" if args.package else "eager PyTorch"
    print(f"wrote {path} ({out.frames.shape[1]} frames, {out.frames.shape[3]}x{out.frames.shape[2]}, {backend}); "
          f"text encoder {t['text_encoder_ms']:.0f} ms, denoising {t['denoise_ms']:.0f} ms, "
          f"decoder {t['vae_decoder_ms']:.0f} ms")
    return 0


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
        config = preset_with_plan(args.preset, args.plan, "inspect shows one plan")
    else:
        config = load_pipeline(args).config
    summary = model_summary(config)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mobile-sdk", description="On-device video diffusion SDK")
    parser.add_argument("--version", action="version", version=f"mobile-sdk {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' own log lines and warnings")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a video from a prompt")
    g.add_argument("--prompt", required=True)
    add_model_args(g)
    g.add_argument("--package", metavar="PKG", help="run an exported package (.mobilepkg or .zip) with ExecuTorch on this host")
    g.add_argument("--frames", type=cli_types.count, help="number of frames (default: the model's)")
    g.add_argument("--height", type=cli_types.count,
                   help="pixels (default: the model's); with --package, one of the package's sizes (inspect lists them)")
    g.add_argument("--width", type=cli_types.count)
    g.add_argument("--steps", type=cli_types.count, help="denoising steps (default: the model's, 4)")
    g.add_argument("--fps", type=cli_types.count)
    g.add_argument("--out", default="out/video.mp4", help="output .mp4, .gif, or .npy (the exact uint8 frames [T, H, W, 3])")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("inspect", help="summarise a model or a package: components, parameters, slots, plan")
    i.add_argument("path", nargs="?", help="a model folder or a package (.mobilepkg / .zip)")
    add_model_args(i, sources=False)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_inspect)

    for ep in entry_points(group=COMMANDS):  # the other layers' subcommands (they import heavy things lazily)
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_third_party()
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
