import numpy as np
import pytest
import torch

from mobile_sdk.errors import ConfigError, GenerationCancelled
from mobile_sdk.video_io import export_to_gif, export_to_video, read_video


def test_seeded_generation_is_deterministic(tiny_pipe):
    a = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(1)).frames
    b = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(1)).frames
    c = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(2)).frames
    assert (a == b).all()
    assert not (a == c).all()


def test_frames_are_uint8_of_the_requested_size(tiny_pipe):
    out = tiny_pipe(["a", "b"], num_frames=3, height=48, width=32, num_inference_steps=2)
    assert out.frames.dtype == np.uint8
    assert out.frames.shape == (2, 3, 48, 32, 3)
    assert out.latents.shape == (2, 4, 3, 6, 4)
    assert set(out.timings_ms) == {"text_encoder_ms", "denoise_ms", "vae_decoder_ms"}


def test_latent_output_stops_before_the_decoder(tiny_pipe):
    full = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(3))
    latent = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(3), output_type="latent")
    assert latent.frames is None and "vae_decoder_ms" not in latent.timings_ms
    torch.testing.assert_close(latent.latents, full.latents, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="output_type 'pil'"):
        tiny_pipe("a red circle", output_type="pil")


def test_bad_size_is_rejected(tiny_pipe):
    with pytest.raises(ConfigError, match="multiples of 16"):
        tiny_pipe("a", height=40)


def test_callback_sees_every_step_and_can_cancel(tiny_pipe):
    seen = []
    tiny_pipe("a", callback=lambda i, t, x: seen.append((i, t, tuple(x.shape))))
    assert [s[:2] for s in seen] == [(0, 1.0), (1, 0.75), (2, 0.5), (3, 0.25)]
    with pytest.raises(GenerationCancelled, match="after step 2 of 4"):
        tiny_pipe("a", callback=lambda i, t, x: i < 1)


def test_mp4_decodes_to_the_requested_frames(tmp_path, tiny_pipe):
    frames = tiny_pipe("a green square moving up", num_frames=5, height=32, width=48).frames[0]
    path = export_to_video(frames, tmp_path / "v.mp4", fps=4)
    decoded = read_video(path)
    assert decoded.shape == (5, 32, 48, 3)
    # H.264 at high quality: close to the frames we wrote.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12


def test_gif(tmp_path, tiny_pipe):
    from PIL import Image

    frames = tiny_pipe("a").frames[0]
    path = export_to_gif(frames, tmp_path / "v.gif")
    with Image.open(path) as im:
        assert im.n_frames == len(frames) and im.size == (32, 32)


def test_export_rejects_bad_frames(tmp_path):
    from mobile_sdk.errors import SDKError

    with pytest.raises(SDKError, match="frames must be uint8"):
        export_to_video(np.zeros((2, 8, 8, 3), dtype=np.float32), tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()
