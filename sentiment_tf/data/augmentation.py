"""Transfer-set augmentation for distillation (Tang et al. 2019, "Distilling Task-Specific Knowledge
from BERT into Simple Neural Networks", §3.3): word masking, same-POS word swap and n-gram sampling,
on jieba's words and part-of-speech tags.

The copies carry no label: the teacher scores them, so a rule that changes the sentiment only
changes the target. Masking drops the word (no token means "unknown" to both an LSTM vocabulary and
a WordPiece vocabulary alike).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentRates:
    mask: float = 0.1  # per word: dropped
    swap: float = 0.1  # per word: replaced by a word of the same tag, drawn by corpus frequency
    ngram: float = 0.25  # per copy: only a span of 1–5 words is kept


def augment(texts: list[str], copies: int, seed: int, rates: AugmentRates = AugmentRates()) -> list[str]:
    """``copies`` augmented variants of each text (deterministic for a seed), without the originals,
    empty results or repeats of an original."""
    if copies <= 0 or not texts:
        return []
    import jieba.posseg

    tagged = [[(pair.word, pair.flag) for pair in jieba.posseg.cut(text)] for text in texts]
    by_tag: dict[str, Counter] = defaultdict(Counter)
    for words in tagged:
        for word, tag in words:
            if not word.isspace():
                by_tag[tag][word] += 1
    pools = {tag: (list(c), np.array(list(c.values()), np.float64) / sum(c.values())) for tag, c in by_tag.items()}
    rng = np.random.default_rng(seed)
    originals = set(texts)
    out: list[str] = []
    for words in tagged:
        for _ in range(copies):
            kept = []
            for word, tag in words:
                roll = rng.random()
                if roll < rates.mask:
                    continue
                if roll < rates.mask + rates.swap and tag in pools:
                    vocab, p = pools[tag]
                    word = vocab[rng.choice(len(vocab), p=p)]
                kept.append(word)
            if kept and rng.random() < rates.ngram:
                n = int(rng.integers(1, 6))
                start = int(rng.integers(0, max(1, len(kept) - n + 1)))
                kept = kept[start:start + n]
            text = "".join(kept).strip()
            if text and text not in originals:
                out.append(text)
    return out
