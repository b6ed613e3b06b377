"""Tiny CLIP-layout BPE vocabularies for tokenizer tests (a small BPE training, nothing downloaded)."""
from __future__ import annotations

from collections import Counter

from mobile_sdk.clip_tokenizer import bytes_to_unicode


def byte_vocab() -> dict[str, int]:
    """The 256 byte characters, the same with </w>, then the special tokens: with no merges, ids spell each
    word's normalised UTF-8 exactly, so they show every normalisation and splitting decision."""
    chars = list(bytes_to_unicode().values())
    return {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}


def learn_merges(corpus: str, count: int) -> list[str]:
    """Frequent adjacent pairs, merged greedily (a small BPE training)."""
    table = bytes_to_unicode()
    words = Counter(tuple(table[b] for b in w.encode()) for w in corpus.lower().split())
    words = Counter({w[:-1] + (w[-1] + "</w>",): n for w, n in words.items()})
    merges = []
    for _ in range(count):
        pairs = Counter(p for w, n in words.items() for p in zip(w, w[1:]) for _ in range(n))
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(" ".join(best))
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if w[i : i + 2] == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def tiny_bpe(corpus: str, num_merges: int = 120) -> tuple[dict[str, int], list[str]]:
    """A CLIP-layout vocabulary: the 256 byte characters, the same with </w>, learnt merges, then the two
    special tokens last (so EOS is the largest id, as in CLIP)."""
    chars = list(bytes_to_unicode().values())
    merges = learn_merges(corpus, num_merges)
    vocab_list = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}, merges
