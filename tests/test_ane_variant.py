"""The Neural-Engine layout must compute the same function as the default one (PSNR >= 60 dB, fp32)."""
import pytest
import torch

from export.lowering.parity import psnr
from mobile_sdk.models import TextEncoder, VideoUNet
from mobile_sdk.models.layers import set_attention_implementation

from .conftest import randomize_temporal


@pytest.mark.parametrize("plan", [{"*": "attn1d"}, {"*": "attn3d"}, {"down0.*": "conv3d", "mid.attn0": "attn3d", "up1.*": "attn1d"}])
def test_unet_ane_layout_matches(tiny_config, plan):
    torch.manual_seed(0)
    unet = VideoUNet(tiny_config.unet, plan=plan).eval()
    randomize_temporal(unet)
    args = (torch.randn(2, 4, 4, 4, 4), torch.tensor([0.3, 0.9]), torch.randn(2, 16, 32))
    with torch.no_grad():
        ref = unet(*args)
        ane = set_attention_implementation(unet, "ane")(*args)
    assert psnr(ref, ane) >= 60.0


def test_text_encoder_ane_layout_matches(tiny_config):
    torch.manual_seed(0)
    enc = TextEncoder(tiny_config.text_encoder).eval()
    ids = enc.tokenizer()(["a red circle moving right", "a"])
    with torch.no_grad():
        ref_h, ref_p = enc(ids)
        ane_h, ane_p = set_attention_implementation(enc, "ane")(ids)
    assert psnr(ref_h, ane_h) >= 60.0 and psnr(ref_p, ane_p) >= 60.0


def test_unknown_implementation(tiny_config):
    with pytest.raises(ValueError, match="unknown attention implementation"):
        set_attention_implementation(TextEncoder(tiny_config.text_encoder), "fast")
