"""Per-token integrated gradients (Sundararajan et al. 2017) over the input embeddings, and their
renderings: ANSI colours, plain text, an HTML page, a PNG and the run's errors page."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.evaluation.report import chinese_rc

STEPS = 50


@dataclasses.dataclass
class Explanation:
    text: str  # the cleaned text the model read
    tokens: list[str]  # as a reader sees them (jieba words; for BERT characters/words, pieces merged)
    scores: list[float]  # attribution to the label's logit, per token
    label: str | None  # the explained label (None: nothing to classify)
    probability: float  # its (calibrated) probability
    logit_delta: float  # logit(text) − logit(baseline): what the scores should sum to
    reason: str | None = None  # why there is no label

    @classmethod
    def nothing(cls, text: str, reason: str) -> "Explanation":
        return cls(text, [], [], None, float("nan"), 0.0, reason)

    @property
    def head(self) -> str:
        if self.label is None:
            return f"no label: {self.reason}"
        return f"{self.label}  p = {self.probability:.3f}"

    @property
    def completeness_error(self) -> float:
        return abs(float(np.sum(self.scores)) - self.logit_delta)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "completeness_error": self.completeness_error}


def integrated_gradients(logit: Callable[[Any], Any], embedded: Any, baseline: Any,
                         steps: int = STEPS) -> tuple[np.ndarray, float]:
    """Per-position attributions for one sequence ``embedded`` [n, d] and logit(x) − logit(baseline).

    ``logit`` maps a batch of embedded sequences [m, n, d] to one scalar each [m]; the ``steps``
    quadrature points and both ends of the path go through it as one batch of ``steps + 2``.
    """
    import tensorflow as tf

    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [−1, 1]
    alphas = np.concatenate([(nodes + 1) / 2, [0.0, 1.0]]).astype(np.float32)
    path = baseline[None] + tf.reshape(alphas, [-1, 1, 1]) * (embedded - baseline)[None]
    with tf.GradientTape() as tape:
        tape.watch(path)
        values = logit(path)
    grads = tape.gradient(values, path)[:steps]
    average = tf.tensordot(tf.constant(weights / 2, grads.dtype), grads, axes=1)  # ∫₀¹ ∂logit dα
    scores = tf.reduce_sum((embedded - baseline) * average, axis=-1)
    return scores.numpy().astype(float), float(values[-1] - values[-2])


# ---------------------------------------------------------------------------------------------
# Rendering


def _rgb(score: float, scale: float) -> tuple[int, int, int]:
    """Green for scores towards the label, red against, white at 0."""
    v = max(-1.0, min(1.0, score / scale)) if scale > 0 else 0.0
    if v >= 0:
        return int(255 * (1 - v * 0.75)), 255, int(255 * (1 - v * 0.75))
    return 255, int(255 * (1 + v * 0.75)), int(255 * (1 + v * 0.75))


def _scale(e: Explanation) -> float:
    return float(np.max(np.abs(e.scores))) if e.scores else 0.0


def ansi(e: Explanation) -> str:
    """The text with each token on a background coloured by its score (24-bit terminal colours)."""
    scale = _scale(e)
    parts = []
    for token, score in zip(e.tokens, e.scores):
        r, g, b = _rgb(score, scale)
        parts.append(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{token}\x1b[0m")
    return "".join(parts)


def plain(e: Explanation, top: int = 5) -> str:
    ranked = sorted(zip(e.tokens, e.scores), key=lambda ts: -abs(ts[1]))[:top]
    return ", ".join(f"{t} {s:+.3f}" for t, s in ranked)


def html_page(explanations: list[Explanation], title: str = "sentiment_tf explanations",
              extra: list[str] | None = None) -> str:
    """A self-contained page: per text, its label, probability and coloured tokens (hover: the score).
    ``extra``: one line of HTML per explanation (e.g. the true label)."""
    rows = []
    for i, e in enumerate(explanations):
        scale = _scale(e)
        spans = "".join(f'<span title="{s:+.4f}" style="background:rgb{_rgb(s, scale)}">{html.escape(t)}</span>'
                        for t, s in zip(e.tokens, e.scores))
        note = f"<div class=note>{extra[i]}</div>" if extra else ""
        head = (f"{html.escape(e.label)} · p = {e.probability:.3f} · completeness error {e.completeness_error:.2g}"
                if e.label is not None else f"no label: {html.escape(e.reason or '')}")
        spans = spans or f"<span>{html.escape(e.text) or '(empty)'}</span>"
        rows.append(f"<div class=item><div class=head>{head}</div>{note}<div class=text>{spans}</div></div>")
    return ("<!doctype html><html lang=zh><head><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.9}"
            ".item{border-bottom:1px solid #ddd;padding:.6em 0}.head{color:#555;font-size:.9em}"
            ".note{color:#a00;font-size:.9em}.text span{padding:.1em 0}</style></head><body><h1>"
            + html.escape(title) + "</h1><p>Integrated gradients over the input embeddings: green pushes "
            "towards the label, red away (hover a token for its score).</p>" + "".join(rows) + "</body></html>")


def png(explanations: list[Explanation], path: str | Path) -> None:
    """The coloured tokens as an image, one text per row (wrapped at 40 tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: list[tuple[str, list[tuple[str, float]], float]] = []
    for e in explanations:
        pairs = list(zip(e.tokens, e.scores))
        chunks = [pairs[i:i + 40] for i in range(0, len(pairs), 40)] or [[]]
        lines.append((e.head, chunks[0], _scale(e)))
        lines += [("", chunk, _scale(e)) for chunk in chunks[1:]]
    with matplotlib.rc_context(chinese_rc()):
        fig = plt.figure(figsize=(12, 0.45 * len(lines) + 0.4))
        renderer = fig.canvas.get_renderer()
        for row, (head, pairs, scale) in enumerate(lines):
            y = 1 - (row + 0.7) / len(lines)
            fig.text(0.005, y, head, fontsize=9, color="#555")
            x = 0.16
            for token, score in pairs:
                r, g, b = _rgb(score, scale)
                text = fig.text(x, y, token, fontsize=11, bbox={"facecolor": (r / 255, g / 255, b / 255),
                                                               "edgecolor": "none", "pad": 1.5})
                x += text.get_window_extent(renderer).width / fig.bbox.width + 0.002
        atomic.savefig(fig, path)
    plt.close(fig)


def write_errors_page(trained: Any, test: Any, probs: np.ndarray, path: str | Path, n: int = 20,
                      steps: int = STEPS) -> int:
    """``errors.html``: the ``n`` test texts the model got wrong most confidently, each explained
    (ktrain's ``view_top_losses``, in one file). Returns how many it shows."""
    y = test["y"].to_numpy()
    wrong = np.flatnonzero(probs.argmax(axis=1) != y)
    worst = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:n]
    texts = test["text"].to_numpy()[worst].tolist()
    explanations = trained.explain(texts, steps=steps) if texts else []
    notes = [f"true label: {html.escape(trained.labels[int(y[i])])}" for i in worst]
    atomic.write_text(path, html_page(explanations, f"The {len(worst)} most confidently wrong test texts", notes))
    return len(worst)


