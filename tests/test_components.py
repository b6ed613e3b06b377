import torch

from mobile_sdk.config import load_preset
from mobile_sdk.models import AutoencoderKL, ByteTokenizer, TextEncoder
from mobile_sdk.models.text_encoder import EOS_ID, PAD_ID
from mobile_sdk.summary import model_summary


def test_snapgen_unet_is_0_6b_with_its_default_plan():
    summary = model_summary(load_preset("snapgen-v-0.6b"))
    params = summary["components"]["unet"]["params"]
    assert abs(params - 0.6e9) <= 0.03 * 0.6e9, params
    assert summary["components"]["unet"]["temporal_params"] > 0
    assert summary["plan_counts"]["none"] == 0


def test_snapgen_text_encoder_is_clip_l_sized():
    summary = model_summary(load_preset("snapgen-v-0.6b"))
    # CLIP ViT-L/14's text tower has 123M parameters.
    assert abs(summary["components"]["text_encoder"]["params"] - 123e6) < 2e6


def test_small_preset_is_a_few_tens_of_millions_at_most():
    summary = model_summary(load_preset("small"))
    assert sum(c["params"] for c in summary["components"].values()) < 50e6


def test_byte_tokenizer():
    tok = ByteTokenizer(max_length=8)
    ids = tok(["ab", "a very long prompt"])
    assert ids.shape == (2, 8)
    assert ids[0].tolist() == [1, 3 + ord("a"), 3 + ord("b"), EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    assert (ids == EOS_ID).sum(dim=1).tolist() == [1, 1]
    assert ids[1, -1] == EOS_ID


def test_text_encoder_is_causal_and_pools_at_eos(tiny_config):
    torch.manual_seed(0)
    enc = TextEncoder(tiny_config.text_encoder).eval()
    tok = enc.tokenizer()
    a, b = tok("red circle"), tok("red square")
    with torch.no_grad():
        ha, pa = enc(a)
        hb, pb = enc(b)
    prefix = len("red ") + 1  # BOS + shared bytes
    torch.testing.assert_close(ha[:, :prefix], hb[:, :prefix])
    assert not torch.allclose(pa, pb)
    eos = int((a[0] == EOS_ID).nonzero())
    torch.testing.assert_close(pa[0], ha[0, eos])


def test_vae_shapes_and_range(tiny_config):
    torch.manual_seed(0)
    vae = AutoencoderKL(tiny_config.vae).eval()
    images = torch.rand(3, 3, 32, 48)
    with torch.no_grad():
        z = vae.encode(images, generator=torch.Generator().manual_seed(0))
        out = vae.decode(z)
    assert z.shape == (3, tiny_config.vae.latent_channels, 4, 6)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
