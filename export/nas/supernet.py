"""SNED-style weight-sharing supernet over temporal placements and, with export.nas.elastic, sizes.

`SupernetUNet` is a `VideoUNet` backbone (from a trained model) whose every slot holds every candidate
temporal op; `set_plan` picks one per slot. A sub-network is a plan, or a (plan, SubNet) pair when the
supernet was trained over width and depth too: `forward_subnet` runs one with the shared weights (the
backbone sliced as the SubNet says; temporal layers stay whole, as outer channels never shrink), and
`extract` / `extract_subnet` turn one into an ordinary UNet for `mobile-sdk export`.

A supernet folder holds `supernet.json` (the base model folder, the preset config, the training
report; `backbone_trained` when the backbone was trained too), `supernet.safetensors` (the candidate
ops' weights, and the backbone's when it was trained; otherwise the backbone stays in the base model),
and `checkpoint/` while training.
"""
from __future__ import annotations

import dataclasses
import itertools
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

from export.nas.elastic import SubNet, elastic_forward
from export.nas.elastic import extract as elastic_extract

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

    def plain_view(self) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
        """The active plan's plain VideoUNet as (config, tensors under VideoUNet names), sharing this
        module's tensors (no copies): what export.nas.elastic slices for a sub-network."""
        tensors = {n: t for n, t in itertools.chain(self.named_parameters(), self.named_buffers())
                   if not n.startswith("candidates.")}
        for slot, op in self.active.items():
            if op != "none":
                layer = self.candidates[_key(slot, op)]
                tensors.update({f"temporal.{_slot_key(slot)}.{n}": t
                                for n, t in itertools.chain(layer.named_parameters(), layer.named_buffers())})
        return dataclasses.replace(self.config, temporal_plan=self.active.to_dict()), tensors

    def forward_subnet(self, plan: Mapping[str, str] | Sequence[int], subnet: SubNet, sample: torch.Tensor,
                       timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """The sub-network (plan, subnet) on the shared weights: sets the plan (as `set_plan`) and runs the
        backbone sliced to `subnet` (export.nas.elastic.elastic_forward); gradients reach the shared weights."""
        self.set_plan(plan)
        return elastic_forward(self, subnet, sample, timestep, encoder_hidden_states)

    def extract_subnet(self, plan: Mapping[str, str] | Sequence[int], subnet: SubNet) -> VideoUNet:
        """An ordinary, smaller VideoUNet with copies of the shared weights of (plan, subnet)."""
        if not isinstance(plan, Mapping):
            plan = TemporalPlan.from_codes(self.slots, plan).to_dict()
        return elastic_extract(self.extract([plan]), subnet)

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
        unet = StepAwareUNet.from_plans(base, [p.to_dict() for p in resolved])
        for view in unet.views:
            self._copy_temporal(view, view.plan)
        unet.untrained_layers = []  # every (slot, op) came from the supernet
        return unet.eval()

    def _copy_temporal(self, unet: VideoUNet, plan: TemporalPlan) -> None:
        for slot, op in plan.items():
            if op != "none":
                unet.temporal_layer(slot).load_state_dict(self.candidates[_key(slot, op)].state_dict())

    # -- files ----------------------------------------------------------------------------------------

    def save(self, directory: str | Path, meta: dict) -> None:
        """supernet.json from `meta`; the weights: the candidates', plus the backbone's (every tensor of
        the module, under its own names) when meta["backbone_trained"]."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict() if meta.get("backbone_trained") else self.candidates.state_dict()
        with atomic_file(directory / SUPERNET_WEIGHTS) as tmp:
            save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp))
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
        (net if meta.get("backbone_trained") else net.candidates).load_state_dict(state, strict=True)
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


def extract_model(directory: str | Path, out: str | Path, plan: Mapping[str, str] | None = None,
                  subnet: SubNet | None = None, resolution: tuple[int, int] | None = None) -> VideoPipeline:
    """Write an ordinary model folder at `out`: the supernet's base model whose UNet is the sub-network
    (plan, subnet) with copies of the shared weights, generating at `resolution` (height, width). Defaults:
    the base model's plan, the full width and depth, the base model's size."""
    net, pipe, meta = load_supernet(directory)
    plan = dict(plan) if plan is not None else pipe.unet.plan.to_dict()
    subnet = subnet or SubNet.full(net.config)
    subnet.validate(net.config, "--subnet")
    height, width = resolution or (pipe.config.height, pipe.config.width)
    pipe.config.check_size(height, width, pipe.config.num_frames, "--resolution")
    unet = net.extract_subnet(plan, subnet)
    config = dataclasses.replace(pipe.config, unet=unet.config, height=height, width=width)
    extracted = VideoPipeline(config, pipe.text_encoder, unet, pipe.vae_decoder, pipe.tokenizer, pipe.trained)
    extracted.save_pretrained(out, extra={"supernet": {"folder": str(Path(directory).resolve()),
                                                       "plan": unet.plan.to_dict(), "subnet": subnet.to_dict(),
                                                       "space": meta.get("training", {}).get("config", {}).get("space")}})
    return extracted
