"""Training under torch.distributed (gloo, 2 processes on this CPU) on the tiny preset.

One 2-rank job (module fixture) runs the teacher, the distillation and the supernet, fresh, interrupted
and resumed; the 1-rank counterparts run in this process. The 2-rank losses must equal the 1-rank ones
with the same global batch up to float reduction order (tolerance: 1e-5 relative), and checkpoints must
resume across world sizes.
"""
import dataclasses
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from export.nas.supernet_train import SupernetTrainConfig, train_supernet
from export.train.distill import DistillConfig, train_distilled
from export.train.loop import TrainLoop
from export.train.teacher import TeacherTrainConfig, train_teacher
from mobile_sdk.config import load_preset
from mobile_sdk.models import AutoencoderKL
from mobile_sdk.pipeline import VideoPipeline

RTOL = 1e-5
TEACHER = TeacherTrainConfig(steps=4, batch_size=4, pool_clips=16, checkpoint_every=2)
# guidance 3 (what our teacher stage saves): the tiny folder's own 1.0 would make the student's first
# regression exactly the teacher's prediction, a loss of rounding noise that cannot match across world sizes
DISTILL = DistillConfig(steps=3, batch_size=2, pool_clips=8, checkpoint_every=2, guidance_scale=3.0)
SUPERNET = SupernetTrainConfig(steps=4, batch_size=2, pool_clips=8, held_out_clips=2, warmup_steps=2,
                               checkpoint_every=2)


class Interrupt(Exception):
    pass


def _interrupt_at(step: int):
    """Patch the loop so that the run stops (like a killed job) when it reaches `step`."""
    real = TrainLoop.generator

    def generator(self, k):
        if k == step:
            raise Interrupt
        return real(self, k)

    TrainLoop.generator = generator
    return lambda: setattr(TrainLoop, "generator", real)


def _interrupted(fn):
    undo = _interrupt_at(3)
    try:
        fn()
    except Interrupt:
        pass
    finally:
        undo()


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runs(root: Path) -> dict:
    """Every scenario's training call, keyed by its run folder."""
    cfg = load_preset("tiny")
    return {
        "teacher": lambda out: train_teacher(cfg, root / "vae", root / out, TEACHER, progress=False),
        "fsdp": lambda out: train_teacher(cfg, root / "vae", root / out, dataclasses.replace(TEACHER, fsdp=True),
                                          progress=False),
        "distill": lambda out: train_distilled(root / "model", root / out, DISTILL, progress=False),
        "supernet": lambda out: train_supernet(root / "model", root / out, SUPERNET, progress=False),
    }


def _two_rank_job(rank: int, world: int, port: int, root: Path) -> None:
    from export.train.distributed import average_gradients, session

    _env(rank, world, port)
    runs = _runs(root)
    with session(120):
        for kind in ("teacher", "distill", "supernet"):
            runs[kind](f"{kind}-2")  # fresh
        for kind in ("teacher", "supernet", "fsdp"):  # stopped at step 3 (checkpoint at 2), resumed as 1 rank
            _interrupted(lambda: runs[kind](f"{kind}-2-part"))
        runs["teacher"]("teacher-1-part")  # a 1-rank run's checkpoint resumed as 2 ranks
        # gradient averaging when ranks use different parameters (the supernet's sub-networks)
        a, b, c = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
        ((a if rank == 0 else b) * (rank + 1.0)).sum().backward()
        average_gradients([a, b, c])
        if rank == 0:
            (root / "grads.json").write_text(json.dumps([a.grad.tolist(), b.grad.tolist(), c.grad]))


def _history(run: Path) -> dict:
    return json.loads((run / "checkpoint/state.json").read_text())["state"]["history"]


def _weights(run: Path) -> dict:
    return load_file(str(run / "checkpoint/state.safetensors"))


def _close(a: dict, b: dict) -> bool:
    """Equal up to summation order: a gradient that is rounding noise around zero (the two ranks' average
    against one batch's sum) still moves an Adam weight by up to a fraction of the learning rate (seen:
    8e-6 on one discriminator conv of the distillation run), hence atol 2e-5 rather than a bitwise match."""
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=2e-5) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # beside two 1-thread ranks on this 2-core machine (2 threads each: 10x slower)
    try:
        yield _all_runs(tmp_path_factory.mktemp("dist"))
    finally:
        torch.set_num_threads(threads)


def _all_runs(root: Path) -> Path:
    torch.manual_seed(0)
    AutoencoderKL(load_preset("tiny").vae).save_pretrained(root / "vae")
    VideoPipeline.from_preset("tiny", seed=0).save_pretrained(root / "model")
    one = _runs(root)
    _interrupted(lambda: one["teacher"]("teacher-1-part"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_two_rank_job, args=(r, 2, port, root)) for port in [_free_port()] for r in range(2)]
    for p in procs:
        p.start()
    for kind in ("teacher", "distill", "supernet"):  # meanwhile, the 1-rank references
        one[kind](f"{kind}-1")
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    for kind in ("teacher", "supernet"):  # the 2-rank runs stopped at step 3, resumed here as 1 rank
        one[kind](f"{kind}-2-part")
    # FSDP needs a process group even for one rank (what torchrun --nproc-per-node 1 gives)
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        one["fsdp"]("fsdp-2-part")
    finally:
        torch.distributed.destroy_process_group()
    return root


@pytest.mark.parametrize("kind", ["teacher", "distill"])
def test_two_ranks_match_one_rank_with_the_same_global_batch(runs, kind):
    one, two = _history(runs / f"{kind}-1"), _history(runs / f"{kind}-2")
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=RTOL, err_msg=name)
    assert _close(_weights(runs / f"{kind}-1"), _weights(runs / f"{kind}-2"))
    assert json.loads((runs / f"{kind}-2/report.json").read_text())["world_size"] == 2


def test_resume_across_world_sizes(runs):
    """2 ranks stopped at step 3 -> 1 rank, and 1 rank stopped at step 3 -> 2 ranks: both retrace the
    uninterrupted run."""
    full = _history(runs / "teacher-1")["loss"]
    for part in ("teacher-2-part", "teacher-1-part"):
        np.testing.assert_allclose(_history(runs / part)["loss"], full, rtol=RTOL, err_msg=part)
        assert _close(_weights(runs / part), _weights(runs / "teacher-1"))
    assert (runs / "teacher-2-part/model/model_index.json").is_file()


def test_fsdp_sharded_checkpoint_resumes_on_another_world_size(runs):
    """FSDP2 over 2 ranks, stopped at step 3, resumed as FSDP2 on 1 rank: the losses and the saved model
    are those of the plain 1-rank run."""
    from export.train.loop import Checkpointer
    from mobile_sdk.errors import SDKError

    np.testing.assert_allclose(_history(runs / "fsdp-2-part")["loss"], _history(runs / "teacher-1")["loss"], rtol=RTOL)
    for part in ("unet", "text_encoder"):
        sharded, plain = (load_file(str(runs / run / "model" / part / "model.safetensors")) for run in ("fsdp-2-part", "teacher-1"))
        assert _close(sharded, plain), part
    assert {p.suffix for p in (runs / "fsdp-2-part/checkpoint").iterdir()} == {".json", ".safetensors"}  # no pickle
    with pytest.raises(SDKError, match="sharded .* resume it with --fsdp"):
        Checkpointer(runs / "fsdp-2-part").load({}, {})


def test_supernet_ranks_draw_their_own_plans(runs):
    one, two = (json.loads((runs / f"supernet-{w}/checkpoint/state.json").read_text())["state"] for w in (1, 2))
    assert [len(b) for b in two["buckets"]] == [2] * SUPERNET.steps and [len(b) for b in one["buckets"]] == [1] * SUPERNET.steps
    assert [b[0] for b in two["buckets"]] == [b[0] for b in one["buckets"]]  # rank 0 draws what one rank draws
    late = [b for b in two["buckets"][SUPERNET.warmup_steps:]]
    assert any(b[0] != b[1] for b in late) or any(-1 not in b for b in late)  # not one shared draw
    report = json.loads((runs / "supernet-2/report.json").read_text())
    assert sum(report["samples_per_bucket"].values()) == 2 * SUPERNET.steps and report["world_size"] == 2
    # interrupted at step 3 with 2 ranks, resumed as 1: the draws and the sampler continue from the checkpoint
    resumed = json.loads((runs / "supernet-2-part/checkpoint/state.json").read_text())["state"]
    assert resumed["step"] == SUPERNET.steps
    assert resumed["buckets"][:2] == two["buckets"][:2] and [b[0] for b in resumed["buckets"][2:]] == [
        b[0] for b in one["buckets"][2:]]
    assert (runs / "supernet-2/supernet.safetensors").is_file()


def test_gradients_of_parameters_used_on_some_ranks_are_averaged(runs):
    a, b, c = json.loads((runs / "grads.json").read_text())
    assert a == [0.5, 0.5]  # used on rank 0 only (gradient 1): (1 + 0) / 2
    assert b == [1.0, 1.0]  # used on rank 1 only (gradient 2): (0 + 2) / 2
    assert c is None  # used nowhere: no gradient, so the optimizer skips it as in one process


def _failing_rank(rank: int, world: int, port: int, root: Path, result) -> None:
    """Rank 1 raises at step 1 while rank 0 waits in that step's gradient all-reduce."""
    from mobile_sdk.errors import SDKError
    from export.train.distributed import session

    _env(rank, world, port)
    if rank == 1:
        _interrupt_at(1)
    start = time.monotonic()
    try:
        with session(120):
            _runs(root)["teacher"]("teacher-fail")
        result.put((rank, "finished", time.monotonic() - start))
    except (SDKError, Interrupt) as e:
        result.put((rank, f"{type(e).__name__}: {e}", time.monotonic() - start))
        sys.exit(2)


def test_a_rank_that_raises_stops_the_others(runs):
    ctx = multiprocessing.get_context("spawn")
    result, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_failing_rank, args=(r, 2, port, runs, result)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=100)  # well below the 120 s timeout: the peer's exit is seen at once
    assert [p.exitcode for p in procs] == [2, 2]
    outcome = dict((r, (msg, s)) for r, msg, s in (result.get(timeout=5) for _ in procs))
    assert outcome[1][0].startswith("Interrupt")
    assert outcome[0][0].startswith("SDKError: rank 0/2: a collective failed"), outcome[0]


FAILING_RANK = """
import os, sys
from export.train.loop import TrainLoop
real = TrainLoop.generator
def generator(self, k):
    if k == 1 and os.environ["RANK"] == "1":
        raise RuntimeError("rank 1 fails on purpose")
    return real(self, k)
TrainLoop.generator = generator
from mobile_sdk.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_under_torchrun(runs, tmp_path):
    """`mobile-sdk supernet train` unchanged under torchrun (2 processes), rank 0 alone writing; then a rank
    that raises: torchrun stops the other and fails, long before the collective timeout."""
    # the latent pool the default sizes would encode (a minute here), made from the small one
    pool = load_file(str(runs / "supernet-1" / "latent_pool.safetensors"))["latents"]
    n = SupernetTrainConfig().pool_clips + SupernetTrainConfig().held_out_clips
    prompts = json.loads((runs / "supernet-1/latent_pool.json").read_text())
    for out in (tmp_path / "super", tmp_path / "fail"):
        out.mkdir()
        save_file({"latents": pool[torch.arange(n) % len(pool)].contiguous()}, str(out / "latent_pool.safetensors"))
        (out / "latent_pool.json").write_text(json.dumps([prompts[i % len(prompts)] for i in range(n)]))
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)

    def torchrun(entry: list[str], out: Path) -> tuple[subprocess.CompletedProcess, float]:
        cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-port",
               str(_free_port()), *entry, "supernet", "train", "--model", str(runs / "model"), "--out", str(out),
               "--steps", "2", "--batch-size", "2", "--dist-timeout", "120"]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return proc, time.monotonic() - start

    proc, _ = torchrun(["-m", "mobile_sdk.cli"], tmp_path / "super")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "super/report.json").read_text())
    assert report["world_size"] == 2 and sum(report["samples_per_bucket"].values()) == 4
    assert proc.stdout.count('"world_size": 2') == 1  # printed by rank 0 only

    proc, seconds = torchrun([str(script)], tmp_path / "fail")
    assert proc.returncode != 0 and "rank 1 fails on purpose" in proc.stderr
    assert seconds < 100 and not (tmp_path / "fail/report.json").exists()
