"""Model components: the video UNet, the text encoder and tokenizer, the per-frame VAE."""
from .text_encoder import ByteTokenizer, TextEncoder
from .unet import VideoUNet
from .vae import AutoencoderKL, VAEDecoder

__all__ = ["AutoencoderKL", "ByteTokenizer", "TextEncoder", "VAEDecoder", "VideoUNet"]
