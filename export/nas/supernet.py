"""SNED-style weight-sharing supernet over temporal placements.

`SupernetUNet` is a `VideoUNet` backbone (frozen, from a trained model) whose every slot holds every
candidate temporal op; `set_plan` picks one per slot. A sub-network is any plan: its quality is read
off with the shared weights (export.nas.accuracy_predictor), and `extract` turns it (or one plan per step) into
an ordinary UNet for `mobile-sdk export`.

A supernet folder holds `supernet.json` (the base model folder, the preset config, the training
report), `supernet.safetensors` (the candidate ops' weights only; the backbone stays in the base model),
and `checkpoint/` while training.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mobile_sdk.atomic import atomic_file
from mobile_sdk.config import UNetConfig, read_json
from mobile_sdk.contract.validate import validate_document
from mobile_sdk.errors import WeightsError
from mobile_sdk.models import VideoUNet
from mobile_sdk.models.step_aware import StepAwareUNet
from mobile_sdk.models.temporal import make_temporal_layer
from mobile_sdk.models.unet import _slot_key
from mobile_sdk.pipeline import VideoPipeline
from mobile_sdk.plan import TEMPORAL_OPS, StepPlans, TemporalPlan, unet_slots

SUPERNET_JSON = "supernet.json"
SUPERNET_WEIGHTS = "supernet.safetensors"
CANDIDATES = TEMPORAL_OPS[1:]


def _key(slot: str, op: str) -> str:
    return f"{_slot_key(slot)}__{op}"


class SupernetUNet(VideoUNet):
    def __init__(self, config: UNetConfig):
        super().__init__(config, plan={})  # the backbone; temporal layers live in `candidates`
        u = self.config
        self.slots = [s.id for s in unet_slots(u)]
        self.candidates = nn.ModuleDict({
            _key(s.id, op): make_temporal_layer(op, s.channels, u.norm_groups, u.head_dim, u.temporal_kernel, u.max_frames)
            for s in unet_slots(u) for op in CANDIDATES})
        self.active = TemporalPlan.resolve({}, u)

    @classmethod
    def from_unet(cls, unet: VideoUNet) -> "SupernetUNet":
        """Backbone from a trained UNet; its trained temporal layers warm-start their candidates."""
        net = cls(UNetConfig(**{**unet.config.__dict__, "temporal_plan": {}}))
        own = unet.state_dict()
        net.load_state_dict({k: v for k, v in own.items() if not k.startswith("temporal.")}, strict=False)
        for slot, op in unet.plan.items():
            if op != "none":
                net.candidates[_key(slot, op)].load_state_dict(unet.temporal_layer(slot).state_dict())
        return net

    def temporal_layer(self, slot: str) -> nn.Module | None:
        op = self.active[slot]
        return None if op == "none" else self.candidates[_key(slot, op)]

    def set_plan(self, plan: Mapping[str, str] | Sequence[int]) -> None:
        """A plan spec, or codes (an index into TEMPORAL_OPS per slot, in slot order)."""
        if isinstance(plan, Mapping):
            self.active = TemporalPlan.resolve(plan, self.config)
        else:
            self.active = TemporalPlan.from_codes(self.slots, plan)

    def backbone_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("candidates."))

    def extract(self, plans: Sequence[Mapping[str, str]]) -> VideoUNet | StepAwareUNet:
        """An ordinary UNet with the shared weights: one plan, or one per step (step-aware)."""
        resolved = [TemporalPlan.resolve(p, self.config) for p in plans]
        base = VideoUNet(self.config, plan=resolved[0].to_dict())
        base.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("candidates.")}, strict=False)
        self._copy_temporal(base, resolved[0])
        if len(set(resolved)) == 1:
            return base.eval()
        unet = StepAwareUNet(base, [p.to_dict() for p in resolved])
        for view, plan in zip(unet.views, unet.distinct):
            self._copy_temporal(view, plan)
        unet.untrained_layers = []  # every (slot, op) came from the supernet
        return unet.eval()

    def _copy_temporal(self, unet: VideoUNet, plan: TemporalPlan) -> None:
        for slot, op in plan.items():
            if op != "none":
                unet.temporal_layer(slot).load_state_dict(self.candidates[_key(slot, op)].state_dict())

    # -- files ----------------------------------------------------------------------------------------

    def save(self, directory: str | Path, meta: dict) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_file(directory / SUPERNET_WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.candidates.state_dict().items()}, str(tmp))
        with atomic_file(directory / SUPERNET_JSON) as tmp:
            tmp.write_text(json.dumps(meta, indent=1) + "\n")


def load_supernet(directory: str | Path) -> tuple[SupernetUNet, VideoPipeline, dict]:
    """(supernet, the base model's pipeline, supernet.json) from a trained supernet folder."""
    directory = Path(directory)
    meta_path, weights = directory / SUPERNET_JSON, directory / SUPERNET_WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise WeightsError(f"{directory}: not a trained supernet (needs {SUPERNET_JSON} and {SUPERNET_WEIGHTS}; "
                           f"train one with `mobile-sdk supernet train`)")
    meta = read_json(meta_path, WeightsError, "supernet description")
    validate_document(meta, "supernet", meta_path, WeightsError)
    base_dir = Path(meta["base_model"])
    if not base_dir.is_absolute():
        base_dir = (directory / base_dir).resolve() if (directory / base_dir).exists() else base_dir
    pipe = VideoPipeline.from_pretrained(base_dir)
    net = SupernetUNet.from_unet(pipe.unet)
    try:
        state = load_file(str(weights))
        net.candidates.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise WeightsError(f"{weights}: does not match the supernet of {base_dir} ({e})") from None
    return net.eval(), pipe, meta


def supernet_pipeline(directory: str | Path, step_plans: StepPlans | None) -> VideoPipeline:
    """The base model with the supernet's sub-network for `step_plans` (default: the base model's plan)."""
    net, pipe, _ = load_supernet(directory)
    plans = step_plans or StepPlans.of(pipe.unet.plan.to_dict())
    specs = list(plans.specs) if not plans.step_aware else plans.per_step(pipe.config.scheduler.num_inference_steps)
    unet = net.extract(specs)
    base = unet.views[0] if isinstance(unet, StepAwareUNet) else unet
    config = dataclasses.replace(pipe.config, unet=base.config)
    return VideoPipeline(config, pipe.text_encoder, unet, pipe.vae_decoder, pipe.tokenizer, pipe.trained)
