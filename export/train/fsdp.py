"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for a teacher that does not fit one device
(`mobile-sdk train teacher --fsdp` under torchrun), and its sharded, reshardable checkpoint.

Memory per rank, P parameters in fp32 trained with AdamW and an EMA copy: DDP keeps everything on
every rank, 4P (weights) + 4P (gradients) + 8P (two Adam moments) + 4P (EMA) = 20P bytes. FSDP2 keeps
1/W of each on each of W ranks, 20P/W, plus the full weights and gradients of the unit being computed
(gathered for its forward and backward, freed after) and the activations, which are not sharded
(they grow with the per-rank batch). snapgen-v-0.6b's teacher (UNet 0.601B + text encoder 0.123B =
0.724B parameters): 14.5 GB of state per rank under DDP; with FSDP2 1.8 GB on 8 ranks (0.9 GB on 16),
plus about 0.16 GB for the largest unit in flight (a 20M-parameter ResBlock: weights and gradients).

The checkpoint is torch.distributed.checkpoint (DCP) with its Hugging Face storage: each rank writes
its shards as safetensors files, and the metadata DCP needs to reshard lives in their headers (no
pickle); the optimizer's non-tensor state (param groups) is JSON. DCP reads it back on any world size.
On several machines, checkpoint/ must be on storage every rank sees.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

from mobile_sdk.errors import SDKError

from export.train.distributed import barrier, rank_and_world

FORMAT = "fsdp2-dcp-safetensors"


CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def shard_model(net: nn.Module) -> None:
    """Shard `net` over all ranks, one unit per layer held in a ModuleList/ModuleDict (UNet ResBlocks
    and transformers, temporal layers, text-encoder layers), the rest as one unit. A layer that itself
    holds such lists (a UNet stage) is no unit: its forward is never called (the UNet calls its layers),
    and FSDP gathers a unit's weights only when its forward runs."""
    from torch.distributed.fsdp import fully_shard

    if not torch.distributed.is_initialized():
        raise SDKError("--fsdp shards over the ranks of a torchrun launch: run under torchrun "
                       "(--nproc-per-node 1 for a single process)")
    for container in [m for m in net.modules() if isinstance(m, CONTAINERS)]:
        for layer in container.children():
            if not any(isinstance(m, CONTAINERS) for m in layer.modules()) and any(True for _ in layer.parameters()):
                fully_shard(layer)
    fully_shard(net)


def full_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0's CPU (empty on the others; every rank must call it)."""
    return get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class ShardedCheckpointer:
    """`Checkpointer`'s interface over DCP; every rank saves and loads its own shards.
    `owners` maps each optimizer's name to the module it optimizes."""

    collective = True

    def __init__(self, run_dir: str | Path, owners: dict[str, nn.Module]):
        self.dir = Path(run_dir) / "checkpoint"
        self.owners = owners

    def _tensors(self, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
        tensors, groups = {}, {}
        for name, m in modules.items():
            tensors.update({f"{name}/{k}": v for k, v in get_model_state_dict(m).items()})
        for name, opt in optimizers.items():
            sd = get_optimizer_state_dict(self.owners[name], opt)
            for fqn, st in sd["state"].items():
                tensors.update({f"optim/{name}/{fqn}/{k}": v for k, v in st.items()})
            groups[name] = sd["param_groups"]
        return tensors, groups

    def save(self, modules, optimizers, state: dict) -> None:
        tensors, groups = self._tensors(modules, optimizers)
        tmp = self.dir.with_name(f".{self.dir.name}.sharded.tmp")
        if rank_and_world()[0] == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier()
        dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(str(tmp), save_distributed=True))
        barrier()
        if rank_and_world()[0] == 0:  # complete: swap it in (as mobile_sdk.atomic.atomic_dir does)
            (tmp / "state.json").write_text(json.dumps({"format": FORMAT, "state": state, "param_groups": groups}))
            old = self.dir.with_name(f".{self.dir.name}.old")
            if self.dir.exists():
                os.replace(self.dir, old)
            os.replace(tmp, self.dir)
            shutil.rmtree(old, ignore_errors=True)
        barrier()

    def load(self, modules, optimizers) -> dict | None:
        path = self.dir / "state.json"
        if not path.is_file():
            return None
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise SDKError(f"{self.dir}: this checkpoint was written without --fsdp; resume it without --fsdp")
        tensors, _ = self._tensors(modules, optimizers)
        try:
            dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(self.dir)))
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported the same way
            raise SDKError(f"{self.dir}: cannot resume from this checkpoint ({e}); delete it to start over") from None
        for name, opt in optimizers.items():
            prefix = f"optim/{name}/"
            state: dict = {}
            for key, value in tensors.items():
                if key.startswith(prefix):
                    fqn, _, field = key[len(prefix):].rpartition("/")
                    state.setdefault(fqn, {})[field] = value
            set_optimizer_state_dict(self.owners[name], opt, {"state": state, "param_groups": meta["param_groups"][name]})
        return meta["state"]
