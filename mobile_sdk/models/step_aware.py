"""Step-aware UNets (DDSM): a different UNet per denoising step.

A StepAwareUNet holds a few distinct views (ordinary VideoUNets) and which one each step runs. The views
of `from_plans` differ only in their temporal plan: they share the backbone modules and, slot by slot,
the temporal layer of the same op. Views may also be different sub-networks (export.nas.elastic.extract:
each its own, smaller tensors). `for_step(i)` gives the view the pipeline runs at step i.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from ..plan import TemporalPlan
from .unet import VideoUNet, _slot_key

BACKBONE = ("time_embedding", "conv_in", "down", "mid", "up", "norm_out", "conv_out")


class StepAwareUNet(nn.Module):
    def __init__(self, views: Sequence[VideoUNet], step_to_view: Sequence[int], untrained_layers: Sequence[str] = ()):
        super().__init__()
        if sorted(set(step_to_view)) != list(range(len(views))):
            raise ValueError(f"every one of the {len(views)} views must serve a step; steps map to {list(step_to_view)}")
        self.views = nn.ModuleList(views)
        self.step_to_view = list(step_to_view)
        self.untrained_layers = list(untrained_layers)  # slot=op layers made fresh (identity) for a plan

    @classmethod
    def from_plans(cls, base: VideoUNet, step_specs: list[Mapping[str, str]]) -> "StepAwareUNet":
        """One view per distinct plan of the steps, over `base`'s backbone and temporal layers."""
        plans = [TemporalPlan.resolve(spec, base.config, source=f"plan for step {i}") for i, spec in enumerate(step_specs)]
        distinct = list(dict.fromkeys(plans))
        bank: dict[tuple[str, str], nn.Module] = {(slot, base.plan[slot]): base.temporal_layer(slot)
                                                  for slot in base.plan if base.plan[slot] != "none"}
        untrained: list[str] = []
        views = []
        for plan in distinct:
            view = VideoUNet(base.config, plan=plan.to_dict())
            for name in BACKBONE:
                setattr(view, name, getattr(base, name))
            for slot, op in plan.items():
                if op == "none":
                    continue
                if (slot, op) not in bank:
                    bank[(slot, op)] = view.temporal_layer(slot)
                    untrained.append(f"{slot}={op}")
                view.temporal[_slot_key(slot)] = bank[(slot, op)]
            views.append(view.eval())
        return cls(views, [distinct.index(p) for p in plans], untrained)

    def for_step(self, step: int) -> VideoUNet:
        return self.views[self.step_to_view[step]]

    def forward(self, *args, **kwargs):
        raise TypeError("StepAwareUNet runs one view per step: call for_step(i)(sample, timestep, hidden)")
