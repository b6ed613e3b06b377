"""What `export --plan` and the schedule proof do with a size search's result: the pipeline's UNet becomes
the searched sub-network of each step (one extracted, really smaller UNet per distinct one)."""
from __future__ import annotations

import dataclasses

from mobile_sdk.config import read_json
from mobile_sdk.errors import SDKError
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.pipeline import VideoPipeline

from export.nas.elastic import SubNet, extract


def apply_searched_subnets(pipe, plan_file: str | None):
    """A plan from `search --space ...width/depth/resolution` names each step's sub-network and the resolution
    (`search.steps`): each distinct (plan, sub-network) of the steps becomes an extracted UNet (export.nas.elastic
    .extract: really smaller tensors), steps that share one share it (a StepAwareUNet over them, so the package
    gets one UNet method each), and the pipeline generates at the resolution. The config keeps the full UNet's
    config: the manifest records each method's sub-network of it."""
    searched = searched_steps(plan_file, pipe.config.scheduler.num_inference_steps)
    if not searched:
        return pipe
    resolutions = list(dict.fromkeys(r for _, r in searched))
    if len(resolutions) > 1:
        raise SDKError(f"{plan_file}: search.steps use {len(resolutions)} resolutions; the steps of a package run at "
                       f"one (the latent keeps its size through the loop)")
    (height, width), steps = resolutions[0], range(len(searched))
    pipe.config.check_size(height, width, pipe.config.num_frames, f"{plan_file}: search.steps[0].resolution")
    bases = [pipe.unet_for_step(i) for i in steps]
    for i, (subnet, _) in enumerate(searched):
        subnet.validate(bases[i].config, f"{plan_file}: search.steps[{i}].subnet")
    keys = [(bases[i].plan, searched[i][0]) for i in steps]
    distinct = list(dict.fromkeys(keys))
    views = [extract(bases[keys.index(k)], k[1]) for k in distinct]
    unet = views[0] if len(views) == 1 else StepAwareUNet(views, [distinct.index(k) for k in keys]).eval()
    config = dataclasses.replace(pipe.config, height=height, width=width)
    return VideoPipeline(config, pipe.text_encoder, unet, pipe.vae_decoder, pipe.tokenizer, pipe.trained)


def searched_steps(plan_file: str | None, num_steps: int):
    """[(SubNet, (height, width))] per step from a search's `search.steps`, or None when the file has none."""
    search = read_json(plan_file).get("search") if plan_file else None
    steps = search.get("steps") if isinstance(search, dict) else None
    if steps is None:
        return None
    if not isinstance(steps, list) or len(steps) != num_steps:
        raise SDKError(f"{plan_file}: search.steps must list one entry per denoising step ({num_steps})")
    out = []
    for i, step in enumerate(steps):
        where = f"{plan_file}: search.steps[{i}]"
        r = step.get("resolution") if isinstance(step, dict) else None
        if not isinstance(r, dict) or not all(type(r.get(k)) is int for k in ("height", "width")):
            raise SDKError(f'{where}.resolution: expected {{"height": H, "width": W}} in pixels')
        out.append((SubNet.from_dict(step.get("subnet"), f"{where}.subnet"), (r["height"], r["width"])))
    return out
