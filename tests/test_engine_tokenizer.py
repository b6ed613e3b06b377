"""The native engine's CLIP BPE tokenizer (mobile_sdk/engine/src/clip_tokenizer.cpp) against the Python
reference (mobile_sdk/clip_tokenizer.py), through the CLI's tokenizer mode (`--tokenizer F --prompts F`):
normalisation (NFC, White_Space, lower case), word splitting and BPE, malformed tokenizer.json files, and
prompts that are not UTF-8. The Unicode tables the engine reads are regenerated and compared."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import time
import unicodedata
from pathlib import Path

import pytest

from tests.bpe_fixtures import byte_vocab, learn_merges
from tests.engine_fixtures import REPO, engine_cli, run_cli  # noqa: F401 - engine_cli is a fixture
from mobile_sdk.clip_tokenizer import EXAMPLE_PROMPTS, WHITE_SPACE, CLIPTokenizer

CORPUS = ("a red circle moving right on a blue background, a photo of an astronaut riding a horse on the moon; "
          "it's a beautiful day and we're going to the sea shore: café, naïve, 東京タワー, 1999 highly detailed 4k")


def tokenizer(vocab: dict[str, int], merges: list[str], max_length: int) -> CLIPTokenizer:
    eos = vocab["<|endoftext|>"]
    return CLIPTokenizer(vocab, merges, max_length, vocab["<|startoftext|>"], eos, eos, eos)


def engine_ids(cli: Path, tmp_path: Path, spec: dict, prompts: list[str]) -> list[list[int]]:
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    _, summary, _ = run_cli(cli, "--tokenizer", tmp_path / "tokenizer.json", "--prompts", tmp_path / "prompts.json")
    return summary["ids"]


def assert_same_ids(cli: Path, tmp_path: Path, tok: CLIPTokenizer, prompts: list[str]) -> None:
    got = engine_ids(cli, tmp_path, tok.to_dict(), prompts)
    for prompt, ids in zip(prompts, got, strict=True):
        assert ids == tok.encode(prompt), ascii(prompt[:200])


def chunks(chars: list[str], size: int, sep: str = "") -> list[str]:
    return [sep.join(chars[i : i + size]) for i in range(0, len(chars), size)]


def test_unicode_tables_are_current():
    path = REPO / "mobile_sdk/engine/tools/gen_unicode_tables.py"
    spec = importlib.util.spec_from_file_location("gen_unicode_tables", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.OUT.read_text() == gen.render(), f"run: .venv/bin/python {path.relative_to(REPO)}"


def test_normalisation_and_words_match_the_reference(engine_cli, tmp_path):
    """Every canonical decomposition (NFD in, NFC expected), Hangul jamo, every lower-case mapping, a shuffled
    sample of all code points (categories), White_Space and look-alikes, reordered combining marks, specials."""
    rng = random.Random(0)
    decomposable = [chr(c) for c in range(0x110000) if unicodedata.decomposition(chr(c))[:1] not in ("", "<")]
    cased = [chr(c) for c in range(0x110000) if chr(c).lower() != chr(c)]
    everything = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    sample = everything[:0x3400] + rng.sample(everything[0x3400:], 40000)
    rng.shuffle(sample)
    jamo = [chr(c) for c in (*range(0x1100, 0x1113), *range(0x1161, 0x1176), *range(0x11A8, 0x11C3), 0xAC00, 0xAC01)]
    marks = [chr(c) for c in (0x300, 0x301, 0x307, 0x308, 0x323, 0x327, 0x328, 0x31B, 0x345, 0x3099, 0x5B0, 0x1D165)]
    spaces = sorted(WHITE_SPACE) + ["\x1c", "\x1f", "\u200b", "\ufeff"]  # the last four are not White_Space
    pool = ["a", "A", "e", "I", "İ", "Σ", "ß", "'", "s", "re", "'ll", "1", "²", "Ⅷ", "!", ",", "<|", "|>", "é", "가",
            *marks, *spaces, *jamo[:5], "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "😀"]
    prompts = [
        *EXAMPLE_PROMPTS,
        *chunks([unicodedata.normalize("NFD", c) for c in decomposable], 60, " "),
        *chunks(decomposable, 100, " "),
        *chunks(cased, 200, " "),
        *chunks(sample, 300),
        *("".join(rng.choices(jamo, k=40)) for _ in range(20)),
        *("".join(rng.choices(pool, k=rng.randrange(0, 40))) for _ in range(300)),
    ]
    assert_same_ids(engine_cli, tmp_path, tokenizer(byte_vocab(), [], 2048), prompts)


def test_bpe_and_truncation_match_the_reference(engine_cli, tmp_path):
    merges = learn_merges(CORPUS, 150)
    vocab = byte_vocab()
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    del vocab["q</w>"]  # a symbol without an id: unk_id
    rng = random.Random(1)
    words = CORPUS.split() + ["aaaaaaaaaa", "q", "moonmoon", "it's", "ΣΑΣ", "<|endoftext|>"]
    prompts = [*EXAMPLE_PROMPTS, *(" ".join(rng.choices(words, k=rng.randrange(0, 90))) for _ in range(300)),
               "a" * 500, "seashore" * 40, CORPUS * 3]
    tok = tokenizer(vocab, merges, 77)
    assert_same_ids(engine_cli, tmp_path, tok, prompts)
    spec = tok.to_dict()
    got = engine_ids(engine_cli, tmp_path, spec, [e["text"] for e in spec["examples"]])
    assert got == [e["ids"] for e in spec["examples"]]  # the tokenizer.json test vectors


def test_a_huge_word_is_fast(engine_cli, tmp_path):
    """BPE merges by a heap, not by rescanning: a 200,000-letter word takes well under a second."""
    merges = ["a a", "aa aa", "aaaa aaaa", "a a</w>"]
    vocab = byte_vocab()
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    started = time.monotonic()
    [ids] = engine_ids(engine_cli, tmp_path, tokenizer(vocab, merges, 77).to_dict(), ["a" * 200_000])
    assert time.monotonic() - started < 5 and ids[1:76] == [vocab["aaaaaaaa"]] * 75


def clip_spec() -> dict:
    return {k: v for k, v in tokenizer(byte_vocab(), ["a b"], 77).to_dict().items() if k != "examples"}


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("vocab"), "'vocab' must be a non-empty object"),
    (lambda s: s.update(vocab=[]), "'vocab' must be a non-empty object"),
    (lambda s: s["vocab"].update(x="7"), "vocab entry \"x\" is not an id"),
    (lambda s: s["vocab"].update(x=-1), "vocab entry \"x\" is not an id"),
    (lambda s: s["vocab"].update(x=2**40), "vocab entry \"x\" is not an id"),
    (lambda s: s.pop("merges"), "'merges' must be a list"),
    (lambda s: s.update(merges=[3]), "merges[0] is not 'left right'"),
    (lambda s: s.update(merges=["a b", "ab"]), "merges[1] is not 'left right'"),
    (lambda s: s.update(merges=["a b c"]), "merges[0] is not 'left right'"),
    (lambda s: s.update(merges=[" b"]), "merges[0] is not 'left right'"),
    (lambda s: s.update(bos_id=10**6), "bos_id 1000000 is past the vocab's largest id"),
    (lambda s: s.update(unk_id=10**6), "unk_id is past the vocab's largest id"),
    (lambda s: s.update(unk_id="0"), "missing or bad 'unk_id'"),
    (lambda s: s.pop("eos_id"), "missing or bad 'eos_id'"),
    (lambda s: s.update(max_length=10**9), "max_length must be in [2, 100000]"),
    (lambda s: s.update(end_of_word_suffix="</s>"), "'end_of_word_suffix' must be"),
    (lambda s: s.update(version=1), "unknown tokenizer type \"clip_bpe\" for version 1"),
    (lambda s: s.update(type="wordpiece"), "unknown tokenizer type \"wordpiece\""),
    (lambda s: s.update(format="hf"), "not a mobile-sdk-tokenizer"),
])
def test_a_malformed_tokenizer_json_is_refused(engine_cli, tmp_path, change, message):
    spec = clip_spec()
    change(spec)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    code, _, stderr = run_cli(engine_cli, "--tokenizer", path, "--prompt", "a", check=False)
    assert code == 2 and f"{path}: " in stderr and message in stderr, stderr


@pytest.mark.parametrize("content", [b"{", b"[1, 2]", b"\xff\xfe", None])
def test_an_unreadable_tokenizer_json_is_refused(engine_cli, tmp_path, content):
    path = tmp_path / "tokenizer.json"
    if content is None:  # past the 64 MiB limit (sparse: nothing is read)
        path.touch()
        os.truncate(path, 65 << 20)
    else:
        path.write_bytes(content)
    code, _, stderr = run_cli(engine_cli, "--tokenizer", path, "--prompt", "a", check=False)
    assert code == 2 and f"{path}: " in stderr, stderr
    assert ("more than a tokenizer's 64 MiB" if content is None else "not a JSON object") in stderr


@pytest.mark.parametrize("prompt, offset", [(b"\xff", 0), (b"ok \xc0\xaf", 3), (b"\xed\xa0\x80", 0),
                                            (b"abc\xe2\x82", 3), (b"\xf4\x90\x80\x80", 0)])
def test_a_prompt_that_is_not_utf8_is_refused(engine_cli, tmp_path, prompt, offset):
    """clip_bpe refuses invalid UTF-8 (overlong, surrogate, truncated, past U+10FFFF); the byte tokenizer
    takes any bytes."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(clip_spec()))
    code, _, stderr = run_cli(engine_cli, "--tokenizer", path, "--prompt", os.fsdecode(prompt), check=False)
    assert code == 2 and f"prompt is not valid UTF-8 (at byte {offset})" in stderr, stderr
    byte = {"format": "mobile-sdk-tokenizer", "version": 1, "type": "byte", "max_length": 16, "pad_id": 0,
            "bos_id": 1, "eos_id": 2, "byte_offset": 3}
    path.write_text(json.dumps(byte))
    _, summary, _ = run_cli(engine_cli, "--tokenizer", path, "--prompt", os.fsdecode(prompt))
    assert summary["ids"] == [[1, *(3 + b for b in prompt), 2] + [0] * (14 - len(prompt))]
