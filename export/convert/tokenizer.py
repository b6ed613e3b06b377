"""A checkpoint's tokenizer/ folder (vocab.json + merges.txt, or tokenizer.json) -> our CLIPTokenizer."""
from __future__ import annotations

from pathlib import Path

from mobile_sdk.clip_tokenizer import CLIPTokenizer
from mobile_sdk.config import read_json

from .checkpoint import ConversionError, require

CLIP_TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast")


def _token(value, default: str) -> str:
    return value.get("content", default) if isinstance(value, dict) else (value or default)


def read_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    config = read_json(folder / "tokenizer_config.json", ConversionError, "tokenizer config")
    require(config.get("tokenizer_class") in CLIP_TOKENIZERS, folder / "tokenizer_config.json",
            f"tokenizer_class {config.get('tokenizer_class')!r} is not supported; only {' or '.join(CLIP_TOKENIZERS)}")
    if (folder / "vocab.json").is_file():
        vocab = read_json(folder / "vocab.json", ConversionError, "vocabulary")
        merges_path = folder / "merges.txt"
        require(merges_path.is_file(), merges_path, "missing (vocab.json needs its merges.txt)")
        lines = merges_path.read_text(encoding="utf-8").splitlines()
        merges = [m for i, m in enumerate(lines) if m and not (i == 0 and m.startswith("#version"))]
    else:
        fast = read_json(folder / "tokenizer.json", ConversionError, "tokenizer (neither vocab.json nor tokenizer.json)")
        model = fast.get("model", {}) if isinstance(fast, dict) else {}
        require(model.get("type") == "BPE", folder / "tokenizer.json", "model.type must be BPE")
        vocab = model.get("vocab")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    require(isinstance(vocab, dict) and vocab, folder, "the vocabulary is empty or not a mapping")
    require(all(isinstance(m, str) and len(m.split(" ")) == 2 for m in merges), folder, "merges must be 'left right' pairs")
    ids = {}
    for role, default in (("bos", "<|startoftext|>"), ("eos", "<|endoftext|>"), ("pad", "<|endoftext|>"), ("unk", "<|endoftext|>")):
        token = _token(config.get(f"{role}_token"), default)
        require(token in vocab, folder, f"the {role} token {token!r} is not in the vocabulary")
        ids[role] = vocab[token]
    max_length = config.get("model_max_length", 77)
    require(isinstance(max_length, int) and 3 <= max_length <= 1024, folder / "tokenizer_config.json",
            f"model_max_length {max_length!r} is not a usable prompt length")
    return CLIPTokenizer(vocab, merges, max_length, ids["bos"], ids["eos"], ids["pad"], ids["unk"])
