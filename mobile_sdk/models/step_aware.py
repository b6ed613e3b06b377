"""Step-aware UNets (DDSM): a different temporal plan per denoising step over one set of weights.

Each distinct plan is a VideoUNet view that shares the backbone modules and, slot by slot, the temporal
layer of the same op. `for_step(i)` gives the view the pipeline runs at step i.
"""
from __future__ import annotations

from typing import Mapping

from torch import nn

from ..plan import TemporalPlan
from .unet import VideoUNet, _slot_key

BACKBONE = ("time_embedding", "conv_in", "down", "mid", "up", "norm_out", "conv_out")


class StepAwareUNet(nn.Module):
    def __init__(self, base: VideoUNet, step_specs: list[Mapping[str, str]]):
        super().__init__()
        plans = [TemporalPlan.resolve(spec, base.config, source=f"plan for step {i}") for i, spec in enumerate(step_specs)]
        self.distinct: list[TemporalPlan] = list(dict.fromkeys(plans))
        self.step_to_plan = [self.distinct.index(p) for p in plans]
        bank: dict[tuple[str, str], nn.Module] = {(slot, base.plan[slot]): base.temporal_layer(slot)
                                                  for slot in base.plan if base.plan[slot] != "none"}
        self.untrained_layers: list[str] = []
        views = []
        for plan in self.distinct:
            view = VideoUNet(base.config, plan=plan.to_dict())
            for name in BACKBONE:
                setattr(view, name, getattr(base, name))
            for slot, op in plan.items():
                if op == "none":
                    continue
                if (slot, op) not in bank:
                    bank[(slot, op)] = view.temporal_layer(slot)
                    self.untrained_layers.append(f"{slot}={op}")
                view.temporal[_slot_key(slot)] = bank[(slot, op)]
            views.append(view.eval())
        self.views = nn.ModuleList(views)

    @property
    def step_plans(self) -> list[TemporalPlan]:
        return [self.distinct[i] for i in self.step_to_plan]

    def for_step(self, step: int) -> VideoUNet:
        return self.views[self.step_to_plan[step]]

    def forward(self, *args, **kwargs):
        raise TypeError("StepAwareUNet runs one plan per step: call for_step(i)(sample, timestep, hidden)")
