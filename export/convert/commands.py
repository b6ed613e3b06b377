"""`mobile-sdk import`: bring an SD-1.5-family checkpoint in as a video model folder (heavy imports lazily)."""
from __future__ import annotations

from mobile_sdk import cli_types


def cmd_import(args) -> int:
    from mobile_sdk.plan import load_plan_file

    from export.convert.diffusers import import_diffusers

    plan = load_plan_file(args.plan).single("import takes one plan (step-aware plans are chosen at export)") if args.plan else None
    options = {"num_frames": args.frames, "height": args.height, "width": args.width, "steps": args.steps,
               "guidance_scale": args.guidance_scale}
    import_diffusers(args.diffusers, args.out, plan=plan, overwrite=args.overwrite,
                     **{k: v for k, v in options.items() if v is not None})
    return 0


def add_import_parser(sub) -> None:
    p = sub.add_parser("import", help="import a diffusers SD-1.5-family checkpoint as a video model folder")
    p.add_argument("--diffusers", required=True, metavar="DIR",
                   help="a diffusers folder on disk (model_index.json, unet/, text_encoder/, tokenizer/, vae/, "
                        "scheduler/; safetensors only)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="the model folder to write (save_pretrained format)")
    p.add_argument("--plan", metavar="FILE", help="temporal plan JSON for the new temporal slots (default: none; "
                                                  "they start as the identity either way)")
    p.add_argument("--frames", type=cli_types.count, help="frames of the video model (default 8)")
    p.add_argument("--height", type=cli_types.count, help="default: the UNet's sample_size x the VAE factor")
    p.add_argument("--width", type=cli_types.count)
    p.add_argument("--steps", type=cli_types.count, help="DDIM steps (default 25)")
    p.add_argument("--guidance-scale", type=cli_types.positive_float, help="classifier-free guidance (default 7.5)")
    p.add_argument("--overwrite", action="store_true", help="replace the model folder already at --out (never anything else)")
    p.set_defaults(func=cmd_import)
