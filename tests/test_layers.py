import torch
import torch.nn.functional as F
from torch import nn

from mobile_sdk.models.layers import Attention, GroupNorm, LayerNorm


def test_groupnorm_matches_torch():
    x = torch.randn(3, 16, 5, 7) * 3 + 1
    ours, ref = GroupNorm(4, 16), nn.GroupNorm(4, 16)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_layernorm_matches_torch():
    x = torch.randn(2, 9, 24) * 2 - 1
    ours, ref = LayerNorm(24), nn.LayerNorm(24)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_attention_matches_sdpa():
    torch.manual_seed(0)
    attn = Attention(32, head_dim=8, context_dim=12)
    x, ctx = torch.randn(2, 10, 32), torch.randn(2, 7, 12)
    q = attn.to_q(x).reshape(2, 10, 4, 8).transpose(1, 2)
    k = attn.to_k(ctx).reshape(2, 7, 4, 8).transpose(1, 2)
    v = attn.to_v(ctx).reshape(2, 7, 4, 8).transpose(1, 2)
    ref = attn.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(attn(x, ctx), ref, atol=1e-5, rtol=1e-5)


def _xnnpack_ops(module: nn.Module, x: torch.Tensor, tmp_path) -> list[str]:
    """The XNNPACK operators one traced run of `module`'s program executes (ETDump)."""
    from export.lowering.executorch import MethodSpec, lower_program
    from profiling.breakdown import etdump_events
    from profiling.devices import HostDevice

    program = tmp_path / "m.pte"
    program.write_bytes(lower_program({"forward": MethodSpec(module.eval(), (x,), ["x"], ["y"])}, log=lambda s: None).data)
    HostDevice(log=lambda s: None).run(program, 0, 1, 1, etdump=tmp_path / "m.etdp")
    return [name for name, _ in etdump_events(tmp_path / "m.etdp")]


def _reshape_group_norm(x: torch.Tensor, groups: int, eps: float = 1e-5) -> torch.Tensor:
    """The textbook rewrite: mean/var over a [N, groups, C/groups, H*W] view (what the layer used to do)."""
    n, c, h, w = x.shape
    x4 = x.reshape(n, groups, c // groups, h * w)
    centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return (centred * torch.rsqrt(var + eps)).reshape(n, c, h, w)


class _ConvNormConv(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.a, self.norm, self.b = nn.Conv2d(8, 16, 3, padding=1), norm, nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


class _LinearNormLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(12, 24), LayerNorm(24), nn.Linear(24, 12)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


def test_norms_keep_xnnpack_layout(tmp_path):
    """A GroupNorm between convolutions keeps the activations in XNNPACK's NHWC layout: what transposes
    remain besides the program's input and output ones are of [1, C, 1, 1] statistics (5 in all, against
    8 for the reshape rewrite, whose transposes move whole activations: the demo decoder ran 28 % slower).
    A LayerNorm between linears needs no transpose or reshape at all."""
    def transposes(norm):
        return sum(op.startswith("Transpose") for op in _xnnpack_ops(_ConvNormConv(norm), torch.randn(1, 8, 6, 6), tmp_path))

    class Reshaped(nn.Module):
        def forward(self, x):
            return _reshape_group_norm(x, 4)

    assert transposes(GroupNorm(4, 16)) == 5 < transposes(Reshaped()) == 8
    token_ops = _xnnpack_ops(_LinearNormLinear(), torch.randn(1, 5, 12), tmp_path)
    assert not any(op.startswith(("Transpose", "Static Reshape")) for op in token_ops), token_ops


def test_norm_constants_are_not_weights():
    """The norms' averaging constants are rebuilt from the config: model folders and checkpoints hold
    nn.GroupNorm's / nn.LayerNorm's tensors only."""
    assert set(GroupNorm(4, 16).state_dict()) == set(nn.GroupNorm(4, 16).state_dict())
    assert set(LayerNorm(24).state_dict()) == set(nn.LayerNorm(24).state_dict())
