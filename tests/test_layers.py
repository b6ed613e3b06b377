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
