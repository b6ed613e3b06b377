"""The shared training loop: exact resume, and only rank 0 writing."""
import pytest
import torch
from torch import nn

from export.train.loop import CHECKPOINT, Checkpointer, TrainLoop


class Interrupt(Exception):
    pass


def train(run_dir, steps=8, stop_at=None, every=3):
    """A small noisy regression through TrainLoop; raises Interrupt at step `stop_at`."""
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    loop = TrainLoop(run_dir, {"net": net}, {"opt": opt}, ("loss", "noise"), steps=steps, lr={"opt": (1e-2, 2)},
                     seed=17, checkpoint_every=every, progress=False)

    def step(k, g):
        if k == stop_at:
            raise Interrupt
        x = torch.randn(16, 4, generator=g)
        noise = torch.randn(16, 2, generator=g)
        loss = torch.mean((net(x) - (x[:, :2] * 3 + 0.1 * noise)) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "noise": noise.abs().mean().item()}

    history = loop.run(step)
    loop.save_loss_curve(run_dir / "loss.png", "test")
    return net, history


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    full_net, full_history = train(tmp_path / "full")
    with pytest.raises(Interrupt):
        train(tmp_path / "part", stop_at=5)
    assert Checkpointer(tmp_path / "part").load({}, {})["step"] == 3
    net, history = train(tmp_path / "part")
    assert history == full_history and len(history["loss"]) == 8
    assert all(torch.equal(a, b) for a, b in zip(full_net.state_dict().values(), net.state_dict().values()))
    assert (tmp_path / "part" / "loss.png").stat().st_size > 0


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    _, rank0 = train(tmp_path / "rank0")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _, rank1 = train(tmp_path / "rank1")
    assert not (tmp_path / "rank1" / CHECKPOINT).exists() and not (tmp_path / "rank1" / "loss.png").exists()
    # the step's draws are the global batch's, the same on every rank (each rank takes its shard of them)
    assert len(rank1["loss"]) == 8 and rank1["noise"] == rank0["noise"]
