"""Training across processes and machines with PyTorch's own engine (torchrun + torch.distributed).

Launched by torchrun (MASTER_ADDR, RANK, WORLD_SIZE in the environment), `session()` opens the
process group (NCCL when CUDA is available, each rank on GPU LOCAL_RANK; gloo on the CPU) with a
timeout, so a rank whose peer died or hangs raises instead of waiting forever; torchrun itself stops
the other ranks as soon as one exits non-zero. Without torchrun the world is one process and the
collective helpers here do nothing, so single-process training is unchanged.

Data-parallel semantics (the same for every trainer):
- `--batch-size` is the **global** batch; each of the W ranks computes `batch / W` of it.
- Every random draw of a step (which clips, noise, timesteps, prompt dropout) is made for the whole
  global batch from the step's generator (seed + step, identical on all ranks), and each rank keeps
  its own slice (`shard`). So a run computes the same function of (seed, step) at any world size,
  and a checkpoint resumes on any world size.
- Gradients are averaged over ranks (DDP), which with equal slices is the gradient of the global
  batch's mean loss; the logged loss is the global mean (`global_mean`).
- The supernet's ranks each train a sub-network of their own draw; see `average_gradients`.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from mobile_sdk.errors import SDKError

DEFAULT_TIMEOUT_S = 1800


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed's when initialised, else the launcher's RANK/WORLD_SIZE."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def device() -> torch.device:
    """Where this process trains: its GPU (LOCAL_RANK, 0 without torchrun) when CUDA is available, else the CPU.
    The data stays on the CPU (its random draws too, so runs are the same function of the seed anywhere)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def session(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """The process group of a torchrun launch, torn down on every path; nothing without one.

    A failed collective (a peer that raised, died or stopped answering for `timeout_s`) becomes one
    line naming this rank, so every rank exits non-zero without a traceback."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if "MASTER_ADDR" not in os.environ or dist.is_initialized():  # not launched by torchrun (or already joined)
        yield
        return
    if not dist.is_available():
        raise SDKError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device().type == "cuda":
        torch.cuda.set_device(device())
    try:
        dist.init_process_group("nccl" if device().type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise SDKError(f"rank {os.environ.get('RANK', '?')}: cannot join the process group (check torchrun's "
                       f"--rdzv-endpoint or MASTER_ADDR/MASTER_PORT; --dist-timeout {timeout_s:g} s): {_first_line(e)}") from None
    rank = dist.get_rank()
    try:
        yield
    except RuntimeError as e:
        if not (isinstance(e, dist.DistError) or "gloo" in str(e)):  # gloo's failures are plain RuntimeErrors
            raise
        raise SDKError(f"rank {rank}/{world}: a collective failed, another rank stopped or timed out: "
                       f"{_first_line(e)}") from None
    finally:
        dist.destroy_process_group()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written what the others read next)."""
    if is_distributed():
        dist.barrier()


def per_rank_batch(batch: int, what: str) -> int:
    """This rank's share of a global batch; the global batch must split evenly."""
    _, world = rank_and_world()
    if batch % world:
        raise SDKError(f"{what} {batch} is the global batch and must be a multiple of the world size {world}")
    return batch // world


def shard(x: torch.Tensor | list) -> torch.Tensor | list:
    """This rank's slice of something drawn for the whole global batch (first dimension)."""
    rank, world = rank_and_world()
    n = len(x) // world
    return x[rank * n:(rank + 1) * n]


def data_parallel(module: nn.Module) -> nn.Module:
    """`module` wrapped in DistributedDataParallel when there are several ranks (else itself).

    DDP copies rank 0's weights to the others, then all-reduces (averages) gradients during
    backward. Only parameters that need gradients take part; frozen parts are ignored."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def global_mean(values: dict[str, float]) -> dict[str, float]:
    """Per-rank losses averaged over ranks (one all-reduce), so the history is the global batch's."""
    if not is_distributed():
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return dict(zip(values, (t / dist.get_world_size()).tolist()))


def all_gather_ints(value: int) -> list[int]:
    """One small integer from every rank, in rank order."""
    if not is_distributed():
        return [value]
    out = torch.zeros(dist.get_world_size(), dtype=torch.int64, device=device())
    dist.all_gather_into_tensor(out, torch.tensor([value], dtype=torch.int64, device=device()))
    return out.tolist()


def broadcast_params(params: list[torch.Tensor]) -> None:
    """Rank 0's values of `params` on every rank (what DDP does when it wraps a module)."""
    if is_distributed():
        for p in params:
            dist.broadcast(p.data, 0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Average the gradients of `params` over ranks, in one all-reduce, when each rank may use
    a different subset of them (the supernet: every rank trains the sub-network of its own draw).

    A rank that did not use a parameter contributes zeros, so the result is (1/W) sum over ranks of
    each rank's gradient: the gradient of the mean of the W ranks' losses, as DDP with
    find_unused_parameters would give. A parameter no rank used keeps no gradient (the optimizer
    skips it, as in one process). DDP itself cannot be used here: it needs every rank to run a
    backward that reaches its parameters, and a rank that drew the all-"none" plan has nothing to
    differentiate, so the others would wait for it until the timeout.
    """
    if not is_distributed():
        return
    parts = []
    for p in params:
        used = p.grad is not None
        parts.append(p.grad.reshape(-1) if used else torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
        parts.append(torch.full((1,), float(used), dtype=p.dtype, device=p.device))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        grad, used = flat[offset:offset + p.numel()], flat[offset + p.numel()]
        offset += p.numel() + 1
        p.grad = (grad / dist.get_world_size()).reshape(p.shape).clone() if used > 0 else None
