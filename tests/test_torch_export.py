"""Every component must go through torch.export with static shapes: the lowering issues rely on it."""
import pytest
import torch

from mobile_sdk.models import TextEncoder, VAEDecoder, AutoencoderKL, VideoUNet

from .conftest import randomize_temporal

PLANS = {
    "none": {},
    "all-conv1d": {"*": "conv1d"},
    "all-conv3d": {"*": "conv3d"},
    "all-attn1d": {"*": "attn1d"},
    "all-attn3d": {"*": "attn3d"},
    "mixed": {"down0.*": "conv3d", "down1.*": "attn1d", "mid.attn0": "attn3d", "up*": "conv1d"},
}


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_unet_exports_and_matches_eager(tiny_config, plan):
    unet = VideoUNet(tiny_config.unet, plan=plan).eval()
    randomize_temporal(unet)
    args = (torch.randn(1, 4, 4, 4, 4), torch.tensor([0.5]), torch.randn(1, 16, 32))
    ep = torch.export.export(unet, args)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*args), unet(*args), atol=1e-5, rtol=1e-5)


def test_text_encoder_exports(tiny_config):
    enc = TextEncoder(tiny_config.text_encoder).eval()
    ids = enc.tokenizer()("a blue triangle moving left")
    ep = torch.export.export(enc, (ids,))
    for a, b in zip(ep.module()(ids), enc(ids)):
        torch.testing.assert_close(a, b)


def test_vae_decoder_exports(tiny_config):
    dec = VAEDecoder(AutoencoderKL(tiny_config.vae)).eval()
    z = torch.randn(4, 4, 4, 4)
    ep = torch.export.export(dec, (z,))
    torch.testing.assert_close(ep.module()(z), dec(z))
