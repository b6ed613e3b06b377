"""`mobile-sdk engine build` and `mobile-sdk engine run`: the native engine from the SDK's CLI.

`run` drives mvd_engine_cli (the host binary, or the arm64 one under qemu) and turns its frames into
.npy (the exact uint8 frames), .mp4 or .gif. Register with `add_engine_parser(subparsers)`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mobile_sdk import cli_types
from mobile_sdk.errors import SDKError

from . import build as engine_build

OUT_SUFFIXES = (".npy", ".mp4", ".gif")
CLI_PREFIX = f"{engine_build.CLI_NAME}: "


class EngineError(SDKError):
    """The native engine refused the package or the request (its one-line message is kept)."""


def cmd_build(args) -> int:
    out = engine_build.build(args.arch, log=lambda m: print(m, file=sys.stderr))
    print(out / engine_build.CLI_NAME)  # the last line: the CLI's path, for scripts
    return 0


def run_cli(arch: str, cli_args: list[str]) -> tuple[dict, list[str]]:
    """Runs mvd_engine_cli; returns its JSON summary and its stderr lines. Its errors become EngineError."""
    cli = engine_build.cli_path(arch, log=lambda m: print(m, file=sys.stderr))
    proc = subprocess.run(engine_build.run_command(cli, arch) + cli_args, capture_output=True, text=True,
                          env=engine_build.run_env(arch))
    lines = proc.stderr.splitlines()
    if proc.returncode == 2:
        message = next((ln for ln in reversed(lines) if ln.startswith(CLI_PREFIX)), lines[-1] if lines else "no message")
        raise EngineError(message.removeprefix(CLI_PREFIX))
    if proc.returncode == 1:
        failed = [ln for ln in lines if ln.startswith("self-test") and ln.endswith("FAILED")]
        raise EngineError(f"self-test below the package's minimum PSNR: {'; '.join(failed) or 'see the engine output'}")
    if proc.returncode != 0:
        raise EngineError(f"{cli} exited with {proc.returncode}: {(lines or ['no output'])[-1]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), lines
    except (json.JSONDecodeError, IndexError):
        raise EngineError(f"{cli}: printed no summary") from None


def cmd_run(args) -> int:
    from mobile_sdk.video_io import check_video_path, export_to_video

    if args.out is None and not args.self_test and args.benchmark is None:
        raise SDKError("nothing to do: give --out F (.npy, .mp4, .gif), --self-test or --benchmark F.json")
    if (args.out or args.benchmark) and args.prompt is None:
        raise SDKError("--prompt is required with --out and --benchmark")
    if not Path(args.package).is_dir():
        raise EngineError(f"{args.package}: no such package folder")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise SDKError(f"{out}: unknown output type {out.suffix or '(none)'!r}; use {', '.join(OUT_SUFFIXES)}")
        if out.suffix.lower() != ".npy":
            check_video_path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    cli_args = ["--package", str(args.package), "--seed", str(args.seed)]
    if args.prompt is not None:
        cli_args += ["--prompt", args.prompt]
    for flag in ("threads", "frames", "height", "width"):
        if getattr(args, flag):
            cli_args += [f"--{flag}", str(getattr(args, flag))]
    if args.self_test:
        cli_args.append("--self-test")
    if args.benchmark:
        cli_args += ["--benchmark", str(args.benchmark), "--warmup", str(args.warmup), "--runs", str(args.runs)]
        if args.arch == "arm64":
            cli_args.append("--emulated")  # qemu timings are recorded as such and never tabled
    with tempfile.TemporaryDirectory(prefix="mvd-engine-") as tmp:
        frames_path = out if out is not None and out.suffix.lower() == ".npy" else Path(tmp) / "frames.npy"
        if out is not None:
            cli_args += ["--out", str(frames_path)]
        summary, lines = run_cli(args.arch, cli_args)
        for line in lines:
            if line.startswith("self-test"):
                print(line)
        if out is not None and frames_path != out:
            export_to_video(np.load(frames_path), out, fps=summary["fps"])
    if out is not None:
        t = summary["timings_ms"]
        t_, h, w, _ = summary["shape"]
        print(f"wrote {out} ({t_} frames, {w}x{h}, native engine {args.arch}); text encoder {t['text_encoder_ms']:.0f} ms, "
              f"denoising {t['denoise_ms']:.0f} ms, decoder {t['vae_decoder_ms']:.0f} ms; load {summary['load_ms']:.0f} ms, "
              f"peak RSS {summary['peak_rss_mb']:.0f} MB")
    if args.benchmark:
        print(f"wrote {args.benchmark}")
    return 0


def add_engine_parser(subparsers) -> None:
    p = subparsers.add_parser("engine", help="the native engine (C++ over ExecuTorch): build it, run a package with it")
    sub = p.add_subparsers(dest="engine_command", required=True)

    b = sub.add_parser("build", help="build the engine if needed; prints the CLI binary's path last")
    b.add_argument("--arch", choices=engine_build.ARCHES, default="host",
                   help="arm64: cross-build (needs mobile_sdk/engine/setup_arm64.sh once)")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="generate from a package with the engine (also --self-test, --benchmark)")
    r.add_argument("--package", required=True, help="a NAME.mobilepkg folder")
    r.add_argument("--prompt")
    r.add_argument("--seed", type=cli_types.seed, default=0, help="portable noise seed, 0 .. 2^64-1")
    r.add_argument("--out", help="frames: .npy (the exact uint8 frames [T, H, W, 3]), .mp4 or .gif")
    r.add_argument("--threads", type=cli_types.count, help="XNNPACK threads (default: ExecuTorch's)")
    r.add_argument("--frames", type=cli_types.count, help="with --height/--width: one of the package's sizes (default: its first)")
    r.add_argument("--height", type=cli_types.count)
    r.add_argument("--width", type=cli_types.count)
    r.add_argument("--arch", choices=engine_build.ARCHES, default="host", help="arm64 runs under qemu (slow)")
    r.add_argument("--self-test", action="store_true", help="replay the package's test vectors (PSNR per component)")
    r.add_argument("--benchmark", metavar="F.json", help="write a pipeline-benchmark.v1 result")
    r.add_argument("--warmup", type=cli_types.nonneg_count, default=1, help="benchmark generations before timing")
    r.add_argument("--runs", type=cli_types.count, default=5, help="timed benchmark generations")
    r.set_defaults(func=cmd_run)
