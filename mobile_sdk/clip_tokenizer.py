"""CLIP's byte-level BPE tokenizer (SD-1.5's text encoder), from the vocabulary and merges of a checkpoint.

It reproduces transformers' CLIPTokenizer, and is specified for the apps in the tokenizer.json version 2
schema (mobile_sdk/contract/schemas/tokenizer.v2.schema.json), step by step:
  0. the special tokens' exact texts (<|startoftext|>, <|endoftext|>) in the prompt are their own ids;
     the text between them goes through steps 1 to 3 separately.
  1. normalise: Unicode NFC; every run of white space (the Unicode White_Space property) becomes one
     space; lower-case each character by itself (Unicode full lower-case mapping, no context rules: Σ is
     always σ).
  2. split into words, scanning left to right (CLIP's pattern without a regex engine): the literals
     <|startoftext|> and <|endoftext|>, the contractions 's 't 're 've 'm 'll 'd, a run of letters
     (general category L*), one number character (N*), or a run of characters that are none of white
     space, letter, number. White space separates words and is dropped. The two literals are then split
     like GPT-2's byte-level pattern does: "<|", the letters, "|>".
  3. each word's UTF-8 bytes become characters by GPT-2's bytes_to_unicode table; "</w>" is appended to
     the last one; adjacent symbols are merged, always the pair of lowest rank in `merges` first, until
     no pair has a rank; each symbol's id is vocab[symbol] (unk_id when absent).
  4. ids = bos_id, the words' ids cut to max_length - 2, eos_id, then pad_id up to max_length.
"""
from __future__ import annotations

import functools
import unicodedata

import torch

SPECIAL_LITERALS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
END_OF_WORD = "</w>"
# Prompts whose ids tokenizer.json carries as `examples`: the apps' tokenizer test vectors (each step above).
EXAMPLE_PROMPTS = (
    "a red circle moving right", "", "A  Photo\tof an ASTRONAUT,\nriding a horse!", "it's we're they've I'd you'll",
    "café naïve Ünïcödé ΣΑΣ İstanbul ß ǅ ﬁ", "東京タワー 😀🚀✨", "x² ½ ⅷ 3.14 1999 #tag @user e-mail (a) ...!!!",
    "\u00a0no\u3000break\u200bspace e\u0301", "hello<|endoftext|>world <|startoftext|>", "long prompt " * 60,
)
# Unicode's White_Space property (PropList.txt); Python's str.isspace() also takes U+001C..U+001F.
WHITE_SPACE = frozenset(
    [chr(c) for c in (*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
                      0x205F, 0x3000)]
)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    out, in_space = [], False
    for ch in text:
        if ch in WHITE_SPACE:
            if not in_space:
                out.append(" ")
            in_space = True
        else:
            out.append(ch)
            in_space = False
    return "".join(ch.lower() for ch in out)  # per character: no context rules (final sigma stays σ)


def _kind(ch: str) -> str:
    if ch in WHITE_SPACE:
        return "space"
    category = unicodedata.category(ch)
    return "letter" if category[0] == "L" else "number" if category[0] == "N" else "other"


def split_words(text: str) -> list[tuple[int, str]]:
    """(offset, word) of each word of normalised text (step 2)."""
    words, i, n = [], 0, len(text)
    while i < n:
        literal = next((s for s in (*SPECIAL_LITERALS, *CONTRACTIONS) if text.startswith(s, i)), None)
        if literal is not None:
            if literal in SPECIAL_LITERALS:
                words += [(i, "<|"), (i + 2, literal[2:-2]), (i + len(literal) - 2, "|>")]
            else:
                words.append((i, literal))
            i += len(literal)
            continue
        kind = _kind(text[i])
        if kind == "space":
            i += 1
            continue
        j = i + 1
        if kind != "number":
            while j < n and _kind(text[j]) == kind:
                j += 1
        words.append((i, text[i:j]))
        i = j
    return words


class CLIPTokenizer:
    """ids [B, max_length] for prompts; `to_dict()` is the package's tokenizer.json (version 2)."""

    def __init__(self, vocab: dict[str, int], merges: list[str], max_length: int, bos_id: int, eos_id: int,
                 pad_id: int, unk_id: int):
        self.vocab, self.merges = vocab, merges
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.max_length, self.bos_id, self.eos_id, self.pad_id, self.unk_id = max_length, bos_id, eos_id, pad_id, unk_id
        self._byte_chars = bytes_to_unicode()
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_dict(cls, spec: dict) -> "CLIPTokenizer":
        return cls(spec["vocab"], spec["merges"], spec["max_length"], spec["bos_id"], spec["eos_id"], spec["pad_id"],
                   spec["unk_id"])

    def to_dict(self) -> dict:
        return {"format": "mobile-sdk-tokenizer", "version": 2, "type": "clip_bpe", "max_length": self.max_length,
                "bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id, "unk_id": self.unk_id,
                "end_of_word_suffix": END_OF_WORD, "vocab": self.vocab, "merges": self.merges,
                "examples": [{"text": p, "ids": self.encode(p)} for p in EXAMPLE_PROMPTS]}

    def word_ids(self, word: str) -> list[int]:
        """BPE of one word (step 3)."""
        if word not in self._cache:
            symbols = [self._byte_chars[b] for b in word.encode("utf-8")]
            symbols[-1] += END_OF_WORD
            while len(symbols) > 1:
                ranked = [(self.ranks.get(pair, -1), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
                ranked = [(r, i) for r, i in ranked if r >= 0]
                if not ranked:
                    break
                _, i = min(ranked)
                symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
            self._cache[word] = [self.vocab.get(s, self.unk_id) for s in symbols]
        return self._cache[word]

    def _words(self, text: str) -> list[tuple[int, int, list[int]]]:
        """(start, end) in `text` and the ids of each word, special tokens included (steps 0 to 3)."""
        out, start = [], 0
        while start <= len(text):
            hits = [(text.find(s, start), s) for s in SPECIAL_LITERALS]
            hit, special = min(((i, s) for i, s in hits if i >= 0), default=(len(text), None))
            segment = text[start:hit]
            norm = normalize(segment)  # offsets below are approximate where normalisation changes lengths
            for offset, word in split_words(norm):
                out.append((start + min(offset, len(segment)), hit, self.word_ids(word)))
            if special is None:
                break
            out.append((hit, hit + len(special), [self.vocab.get(special, self.unk_id)]))
            start = hit + len(special)
        return out

    def encode(self, text: str) -> list[int]:
        body = [i for _, _, ids in self._words(text) for i in ids][: self.max_length - 2]
        ids = [self.bos_id, *body, self.eos_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def dropped_bytes(self, text: str) -> int:
        """About how many UTF-8 bytes of the prompt lie in words cut off at max_length - 2 tokens."""
        count = 0
        for start, _, ids in self._words(text):
            count += len(ids)
            if count > self.max_length - 2:
                return len(text[start:].encode("utf-8", errors="surrogateescape"))
        return 0

    def __call__(self, prompts: str | list[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        return torch.tensor([self.encode(p) for p in prompts], dtype=torch.long)
