import pytest
import torch
import torch.nn.functional as F

from mobile_sdk.models import VideoUNet
from mobile_sdk.models.temporal import TemporalAttention, TemporalConv, shift_frames
from mobile_sdk.plan import TEMPORAL_OPS, unet_slots

from .conftest import randomize_temporal

B, T = 2, 4


def _inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.unet.in_channels, T, 4, 4, generator=g)
    t = torch.rand(B, generator=g)
    ctx = torch.randn(B, cfg.text_encoder.max_length, cfg.unet.cross_attention_dim, generator=g)
    return x, t, ctx


@pytest.mark.parametrize("op", TEMPORAL_OPS)
def test_every_op_in_every_slot_runs_with_the_right_shape(tiny_config, op):
    unet = VideoUNet(tiny_config.unet, plan={"*": op}).eval()
    randomize_temporal(unet)
    x, t, ctx = _inputs(tiny_config)
    with torch.no_grad():
        out = unet(x, t, ctx)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    expected = 0 if op == "none" else len(unet_slots(tiny_config.unet))
    assert len(unet.temporal) == expected


@pytest.mark.parametrize("op", TEMPORAL_OPS[1:])
def test_single_slot_plans(tiny_config, op):
    x, t, ctx = _inputs(tiny_config)
    for slot in unet_slots(tiny_config.unet):
        unet = VideoUNet(tiny_config.unet, plan={slot.id: op}).eval()
        with torch.no_grad():
            assert unet(x, t, ctx).shape == x.shape


def test_temporal_layers_start_as_identity(tiny_config):
    """Adding temporal layers to an image backbone must not change its output at initialisation."""
    torch.manual_seed(0)
    image = VideoUNet(tiny_config.unet, plan={}).eval()
    x, t, ctx = _inputs(tiny_config)
    for op in TEMPORAL_OPS[1:]:
        video = VideoUNet(tiny_config.unet, plan={"*": op}).eval()
        missing = video.load_state_dict(image.state_dict(), strict=False).missing_keys
        assert missing and all(k.startswith("temporal.") for k in missing)
        with torch.no_grad():
            torch.testing.assert_close(video(x, t, ctx), image(x, t, ctx), atol=0, rtol=0)


def test_image_model_treats_frames_independently(tiny_config):
    unet = VideoUNet(tiny_config.unet, plan={}).eval()
    x, t, ctx = _inputs(tiny_config)
    with torch.no_grad():
        full = unet(x, t, ctx)
        one = unet(x[:, :, 1:2], t, ctx)
    torch.testing.assert_close(full[:, :, 1:2], one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op", TEMPORAL_OPS[1:])
def test_temporal_ops_mix_frames(tiny_config, op):
    """Changing frame 0 must change the output at frame 1 once the temporal layers have weights."""
    unet = VideoUNet(tiny_config.unet, plan={"*": op}).eval()
    randomize_temporal(unet)
    x, t, ctx = _inputs(tiny_config)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        diff = (unet(x, t, ctx)[:, :, 1] - unet(x2, t, ctx)[:, :, 1]).abs().max()
    assert diff > 1e-4


def test_shift_frames():
    y = torch.arange(2 * 3).float().reshape(6, 1, 1, 1)  # B=2, T=3
    assert shift_frames(y, 1, 3).flatten().tolist() == [1, 2, 0, 4, 5, 0]
    assert shift_frames(y, -1, 3).flatten().tolist() == [0, 0, 1, 0, 3, 4]
    assert shift_frames(y, 3, 3).abs().sum() == 0


@pytest.mark.parametrize("kernel_s", [1, 3])
def test_decomposed_conv_equals_conv3d(kernel_s):
    torch.manual_seed(0)
    c, h, w = 8, 5, 6
    layer = TemporalConv(c, groups=2, kernel_t=3, kernel_s=kernel_s)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    x = torch.randn(B * T, c, h, w)
    y = layer.norm(x)
    y = y * torch.sigmoid(y)
    vid = y.reshape(B, T, c, h, w).permute(0, 2, 1, 3, 4)
    ref = F.conv3d(vid, layer.conv3d_weight(), layer.taps[1].bias, padding=(1, kernel_s // 2, kernel_s // 2))
    ref = x + ref.permute(0, 2, 1, 3, 4).reshape(B * T, c, h, w)
    torch.testing.assert_close(layer(x, T), ref, atol=1e-4, rtol=1e-4)


def test_attn1d_keeps_positions_apart_and_attn3d_mixes_them():
    torch.manual_seed(0)
    c = 16
    x = torch.randn(B * T, c, 3, 3)
    x2 = x.clone()
    x2[:, :, 0, 0] += torch.randn(B * T, c)  # change one spatial position in every frame
    for joint, expect_mix in [(False, False), (True, True)]:
        layer = TemporalAttention(c, head_dim=8, max_frames=8, joint=joint)
        with torch.no_grad():
            for p in layer.parameters():
                p.normal_(std=0.3)
            diff = (layer(x, T) - layer(x2, T))[:, :, 2, 2].abs().max()
        assert (diff > 1e-5) == expect_mix
