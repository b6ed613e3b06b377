"""The model arguments every command shares (--model, --preset, --plan, --seed, and model sources
registered by other layers, e.g. export's --supernet) and the pipeline they name."""
from __future__ import annotations

import argparse
from dataclasses import replace
from importlib.metadata import entry_points

from . import cli_types
from .errors import SDKError

MODEL_SOURCES = "mobile_sdk.model_sources"


def model_sources() -> dict:
    """Sources other layers register (entry point group `mobile_sdk.model_sources`): name -> object with
    `help` and `load(path, step_plans) -> VideoPipeline`."""
    return {ep.name: ep.load() for ep in entry_points(group=MODEL_SOURCES)}


def add_model_args(p: argparse.ArgumentParser, sources: bool = True) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="DIR", help="a model folder written by save_pretrained (default: the shipped demo model)")
    src.add_argument("--preset", metavar="NAME", help="a preset with random weights: tiny, small, snapgen-v-0.6b")
    for name, source in (model_sources().items() if sources else ()):
        src.add_argument(f"--{name}", metavar="DIR", help=source.help)
    p.add_argument("--plan", metavar="FILE", help='temporal plan JSON: {"slots": {...}} or {"steps": [{"slots": ...}, ...]}')
    p.add_argument("--seed", type=cli_types.seed, default=0, help="seed (initial noise; also random weights of a preset)")


def load_pipeline(args):
    """The pipeline the model arguments name: --model DIR, --preset NAME, a registered source, or the demo model."""
    from .config import load_preset
    from .pipeline import VideoPipeline
    from .plan import load_plan_file
    from .weights import default_model_dir

    step_plans = load_plan_file(args.plan) if args.plan else None
    for name, source in model_sources().items():
        if getattr(args, name, None):
            return source.load(getattr(args, name), step_plans)
    if args.preset:
        cfg = load_preset(args.preset)
        if step_plans:
            step_plans.resolve(cfg.unet)
            step_plans.per_step(cfg.scheduler.num_inference_steps)
        return VideoPipeline.from_config(cfg, seed=args.seed, plan=step_plans)
    model_dir = args.model or default_model_dir()
    pipe = VideoPipeline.from_pretrained(model_dir)
    if step_plans:
        pipe = pipe.with_step_plans(step_plans)
        if pipe.unet.untrained_layers:
            raise SDKError(f"{args.plan}: the model in {model_dir} has no trained weights for "
                           f"{', '.join(pipe.unet.untrained_layers)}; a trained model can only keep or drop ('none') its temporal layers")
    return pipe


def preset_with_plan(preset: str, plan_file: str | None, one_plan_only: str):
    """A preset's config, with the single plan of `plan_file` (validated against the file's name) if given."""
    from .config import load_preset
    from .plan import load_plan_file

    config = load_preset(preset)
    if not plan_file:
        return config
    step_plans = load_plan_file(plan_file)
    spec = step_plans.single(one_plan_only)
    step_plans.resolve(config.unet)
    return replace(config, unet=replace(config.unet, temporal_plan=spec))
