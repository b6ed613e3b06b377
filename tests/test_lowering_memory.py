"""What the lowering keeps in memory: no second copy of the weights for XNNPACK's preprocess, and a worker's
weights mapped from a file. Both must leave the lowered program byte for byte as it was."""
import contextlib
from pathlib import Path

import torch
from torch import nn

from export.lowering import executorch as lowering
from export.lowering.component_worker import file_backed_weights


class _Tied(nn.Module):
    """A convolution, two linear layers sharing one weight, a buffer: all of it XNNPACK's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 8, bias=False)
        self.head.weight = self.proj.weight  # tied: one storage, two names
        self.register_buffer("scale", torch.full((8,), 0.5))

    def forward(self, x):
        y = self.conv(x).mean(dim=(2, 3))
        return self.head(torch.relu(self.proj(y)) * self.scale)


EXAMPLE = (torch.randn(2, 4, 8, 8),)


def _program():
    torch.manual_seed(0)
    return torch.export.export(_Tied().eval(), EXAMPLE, strict=False)


def _lowered_bytes(program) -> bytes:
    return lowering.lower_exported({"main": program}, log=lambda s: None)[0].buffer


def test_preprocess_shares_the_weights_and_lowers_the_same_program(monkeypatch):
    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    program = _program()
    before = {k: v.clone() for k, v in program.state_dict.items()}
    ptrs = {v.data_ptr() for v in program.state_dict.values()}
    stock_preprocess, seen = XnnpackBackend.preprocess, []

    def preprocess(edge_program, compile_specs):
        seen.append({v.data_ptr() for v in edge_program.state_dict.values()})
        return stock_preprocess(edge_program, compile_specs)

    monkeypatch.setattr(XnnpackBackend, "preprocess", staticmethod(preprocess))
    shared = _lowered_bytes(program)
    assert seen and all(s <= ptrs for s in seen), "preprocess got copies of the weights"
    assert "copy_exported_program_for_preprocess" not in XnnpackBackend.__dict__  # ExecuTorch's own hook is back
    assert all(torch.equal(before[k], v) for k, v in program.state_dict.items())  # nothing changed in place

    seen.clear()
    monkeypatch.setattr(lowering, "preprocess_shares_weights", contextlib.nullcontext)
    stock = _program()  # the same weights, lowered through ExecuTorch's own deep copy
    stock_ptrs = {v.data_ptr() for v in stock.state_dict.values()}
    assert _lowered_bytes(stock) == shared
    assert seen and not any(s & stock_ptrs for s in seen)


def _file_maps(path: Path) -> int:
    return sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_file_backed_weights_keep_values_ties_and_the_lowered_program(tmp_path):
    program = _program()
    reference = _lowered_bytes(_program())
    values = {k: v.clone() for k, v in program.state_dict.items()}
    types = {k: type(v) for k, v in program.state_dict.items()}
    scratch = tmp_path / "weights.safetensors"

    file_backed_weights(program, scratch)

    assert not scratch.exists() and _file_maps(scratch) > 0  # unlinked, still mapped
    assert all(torch.equal(values[k], v) for k, v in program.state_dict.items())
    assert {k: type(v) for k, v in program.state_dict.items()} == types  # parameters stay parameters
    tied = [v for k, v in program.state_dict.items() if k in ("proj.weight", "head.weight")]
    assert len(tied) in (1, 2) and len({v.untyped_storage().data_ptr() for v in tied}) == 1
    assert _lowered_bytes(program) == reference
