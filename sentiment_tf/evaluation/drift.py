"""What a model's input looked like at training time (its *profile*, stored in the export's metadata)
and how far new data has moved from it: OOV rate, length and confidence (PSI and KS), predicted
labels (PSI), texts with nothing to classify, top tokens.

The profile is measured on the held-out test split, with the model's own tokenizer and calibrated
probabilities, so a sample of the same distribution compares with it as new data would.
PSI (population stability index) uses ten bins at the reference's deciles; 0.1–0.2 is the usual
"moderate" and > 0.2 the usual "significant" shift (Siddiqi, *Credit Risk Scorecards*, 2006). A PSI
counts as drift only when it is also unlikely under no shift (p < 1 %, :func:`psi_p_value`): with a
few dozen texts on either side, PSI above 0.2 is common noise.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections import Counter
from typing import Any

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import cleaned_has_words
from sentiment_tf.evaluation import report

PROFILE_VERSION = 1
QUANTILES = np.linspace(0.0, 1.0, 101)  # the KS statistic is read at these points of the reference
BINS = 10
TOP_TOKENS = 50
_FLOOR = 1e-4  # an empty bin's share in PSI (log of 0 otherwise)


@dataclasses.dataclass
class Tokens:
    """A model's own tokens per text (jieba tokens or word pieces), and how many of them it does not know."""

    tokens: list[list[str]]
    oov: list[int]




@dataclasses.dataclass
class Sample:
    """The per-text measurements of one set of texts under one model."""

    lengths: np.ndarray  # tokens per text
    oov: np.ndarray  # unknown tokens per text
    confidence: np.ndarray  # top probability per text
    predicted: np.ndarray  # label id per text
    nothing: np.ndarray  # bool: nothing to classify
    counts: Counter  # word-like token counts
    labels: list[str]

    @classmethod
    def measure(cls, cleaned: list[str], tokens: Tokens, probabilities: np.ndarray, labels: list[str]) -> "Sample":
        probs = np.asarray(probabilities, dtype=np.float64).reshape(len(cleaned), len(labels))
        counts = Counter(t for toks in tokens.tokens for t in toks if cleaned_has_words(t))
        return cls(np.array([len(t) for t in tokens.tokens], dtype=np.float64), np.asarray(tokens.oov, np.float64),
                   probs.max(axis=1), probs.argmax(axis=1), np.array([not cleaned_has_words(t) for t in cleaned], bool),
                   counts, list(labels))

    @classmethod
    def concat(cls, parts: list["Sample"]) -> "Sample":
        """One sample of the texts of ``parts`` (chunks of one file)."""
        counts: Counter = Counter()
        for part in parts:
            counts.update(part.counts)
        return cls(*(np.concatenate([getattr(part, f) for part in parts]) for f in
                     ("lengths", "oov", "confidence", "predicted", "nothing")), counts, parts[0].labels)

    @property
    def oov_rate(self) -> float:
        return float(self.oov.sum() / max(self.lengths.sum(), 1.0))

    def label_shares(self) -> np.ndarray:
        return np.bincount(self.predicted, minlength=len(self.labels)) / max(len(self.predicted), 1)

    def top_tokens(self) -> list[list]:
        total = max(sum(self.counts.values()), 1)
        return [[t, round(c / total, 6)] for t, c in self.counts.most_common(TOP_TOKENS)]

    def profile(self) -> dict[str, Any]:
        """The JSON the export stores (a few kB)."""
        return {"profile_version": PROFILE_VERSION, "texts": int(len(self.lengths)), "tokens": int(self.lengths.sum()),
                "oov_rate": round(self.oov_rate, 6), "nothing_share": round(float(self.nothing.mean()), 6),
                "length": distribution(self.lengths), "confidence": distribution(self.confidence),
                "labels": {name: round(float(s), 6) for name, s in zip(self.labels, self.label_shares())},
                "top_tokens": self.top_tokens()}


def profile_of(trained: Any, cleaned: list[str], probabilities: np.ndarray) -> dict[str, Any]:
    """The profile of a trained model (``sentiment_tf.models.family.Trained``) on its test split."""
    return Sample.measure(cleaned, trained.tokens(cleaned), probabilities, trained.labels).profile()


def distribution(values: np.ndarray) -> dict[str, list[float]]:
    """Bins at the deciles (ties merged) with their shares, for PSI; the percentiles and the CDF at
    each, for KS."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    quantiles = np.quantile(values, QUANTILES)
    return {"edges": [round(float(e), 6) for e in edges], "shares": [round(float(s), 6) for s in shares(values, edges)],
            "quantiles": [round(float(q), 6) for q in quantiles],
            "cdf": [round(float(np.mean(values <= q)), 6) for q in quantiles]}


def shares(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin (-inf, e0], (e0, e1], …, (e_last, inf)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(idx, minlength=len(edges) + 1) / max(len(values), 1)


def psi(reference: np.ndarray, new: np.ndarray) -> float:
    r = np.clip(np.asarray(reference, dtype=np.float64), _FLOOR, None)
    n = np.clip(np.asarray(new, dtype=np.float64), _FLOOR, None)
    return float(np.sum((n - r) * np.log(n / r)))


def ks(reference: dict, values: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance between the reference's CDF (at its percentiles) and ``values``'."""
    q = np.asarray(reference["quantiles"], dtype=np.float64)
    new_cdf = np.searchsorted(np.sort(values), q, side="right") / max(len(values), 1)
    return float(np.max(np.abs(new_cdf - np.asarray(reference["cdf"], dtype=np.float64))))


@dataclasses.dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2  # length, confidence and predicted-label PSI above this is drift
    oov: float = 0.05  # OOV rate this much above the reference's (absolute) is drift
    nothing: float = 0.05  # share of texts with nothing to classify this much above the reference's


@dataclasses.dataclass
class Check:
    name: str
    statistic: str  # what ``value`` is
    value: float
    threshold: float | None  # None: shown, never drift
    reference: str
    current: str
    detail: str = ""
    p_value: float | None = None  # PSI checks: a large PSI from few texts is noise, not drift

    @property
    def drift(self) -> bool:
        significant = self.p_value is None or self.p_value < ALPHA
        return self.threshold is not None and self.value > self.threshold and significant

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "statistic": self.statistic, "value": round(self.value, 6),
                "threshold": self.threshold, "p_value": None if self.p_value is None else float(f"{self.p_value:.3g}"),
                "drift": self.drift, "reference": self.reference, "current": self.current, "detail": self.detail}


ALPHA = 0.01


def psi_p_value(value: float, bins: int, n_reference: int, n_current: int) -> float:
    """How likely a PSI this large is between two samples of one distribution: PSI ≈ χ²(bins − 1) ×
    (1/n₁ + 1/n₂) under that hypothesis (PSI is the symmetrised KL divergence; its χ² limit as for G-tests)."""
    from scipy.stats import chi2

    scale = 1.0 / max(n_reference, 1) + 1.0 / max(n_current, 1)
    return float(chi2.sf(value / scale, max(bins - 1, 1)))


def _describe(quantiles: list[float], fmt: str) -> str:
    return f"median {quantiles[50]:{fmt}}, p90 {quantiles[90]:{fmt}}"


def compare(reference: dict[str, Any], sample: Sample, thresholds: Thresholds, fitted_reference: bool = False) -> list[Check]:
    """Every check of ``sample`` against a stored profile, in the order the table prints them.
    ``fitted_reference``: the reference is the model's own training data, whose OOV rate and confidence
    are optimistic (the vocabulary and weights were fitted to it); those two are shown, not judged."""
    labels = list(reference["labels"])
    ref_labels = np.array([reference["labels"][k] for k in labels])
    new_labels = sample.label_shares()
    current_length, current_conf = (np.quantile(v, QUANTILES).tolist() for v in (sample.lengths, sample.confidence))
    ref_top = {t for t, _ in reference["top_tokens"]}
    new_top = [t for t, _ in sample.top_tokens()]
    unseen = [t for t in new_top if t not in ref_top]
    shared = 1 - len(unseen) / max(len(new_top), 1)
    n_ref, n_new = int(reference["texts"]), len(sample.lengths)

    def spread(key: str, values: np.ndarray, fmt: str, current: list[float]) -> Check:
        ref = reference[key]
        value = psi(ref["shares"], shares(values, ref["edges"]))
        return Check(f"{key} ({'tokens' if key == 'length' else 'top probability'})", "PSI", value, thresholds.psi,
                     _describe(ref["quantiles"], fmt), _describe(current, fmt), f"KS {ks(ref, values):.3f}",
                     psi_p_value(value, len(ref["shares"]), n_ref, n_new))

    label_psi = psi(ref_labels, new_labels)
    fit_threshold = (lambda t: None) if fitted_reference else (lambda t: t)
    fit_note = "reference = training data: not judged" if fitted_reference else ""
    checks = [
        Check("oov rate", "increase", sample.oov_rate - reference["oov_rate"], fit_threshold(thresholds.oov),
              f"{reference['oov_rate']:.2%}", f"{sample.oov_rate:.2%}", fit_note),
        spread("length", sample.lengths, ".0f", current_length),
        dataclasses.replace(spread("confidence", sample.confidence, ".3f", current_conf),
                            threshold=fit_threshold(thresholds.psi)),
        Check("predicted labels", "PSI", label_psi, thresholds.psi,
              " ".join(f"{k} {v:.0%}" for k, v in zip(labels, ref_labels)),
              " ".join(f"{k} {v:.0%}" for k, v in zip(labels, new_labels)), "",
              psi_p_value(label_psi, len(labels), n_ref, n_new)),
        Check("nothing to classify", "increase", float(sample.nothing.mean()) - reference["nothing_share"],
              thresholds.nothing, f"{reference['nothing_share']:.2%}", f"{sample.nothing.mean():.2%}"),
        Check("top tokens", f"known of top {TOP_TOKENS}", shared, None, f"{len(ref_top)} tokens",
              f"{round(shared * len(new_top))} of {len(new_top)}",
              "new: " + " ".join(unseen[:8]) if unseen else "none new"),
    ]
    return checks


def table(checks: list[Check]) -> str:
    rows = [("check", "statistic", "value", "threshold", "p", "drift", "reference", "current", "")]
    for c in checks:
        rows.append((c.name, c.statistic, f"{c.value:.4f}", "-" if c.threshold is None else f"{c.threshold:g}",
                     "" if c.p_value is None else f"{c.p_value:.2g}",
                     "DRIFT" if c.drift else ("ok" if c.threshold is not None else ""), c.reference, c.current, c.detail))
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(r[:-1], widths)) + "  " + r[-1]).rstrip()
                     for r in rows)


def _width(s: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def plot(reference: dict[str, Any], sample: Sample, path: Any, title: str) -> None:
    """Reference vs current: length and confidence CDFs, predicted-label shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(report.chinese_rc()):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, key, values, xlabel in ((axes[0], "length", sample.lengths, "tokens per text"),
                                        (axes[1], "confidence", sample.confidence, "top probability")):
            ref = reference[key]
            ax.plot(ref["quantiles"], ref["cdf"], label=f"reference ({reference['texts']})", color="0.4")
            xs = np.sort(values)
            ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=f"current ({len(xs)})", color="C3")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("share of texts ≤ x")
            ax.legend(loc="lower right")
        labels = list(reference["labels"])
        x = np.arange(len(labels))
        axes[2].bar(x - 0.2, [reference["labels"][k] for k in labels], 0.4, label="reference", color="0.6")
        axes[2].bar(x + 0.2, sample.label_shares(), 0.4, label="current", color="C3")
        axes[2].set_xticks(x, labels)
        axes[2].set_ylabel("share of predictions")
        axes[2].legend()
        fig.suptitle(title)
        fig.tight_layout()
        atomic.savefig(fig, path)
        plt.close(fig)


def check_profile(profile: Any, labels: list[str], where: str) -> dict[str, Any]:
    """A stored profile, or a one-line :class:`UserError` naming what is wrong with it."""
    if profile is None:
        raise UserError(f"{where} records no data profile (exported by an older sentiment_tf); pass --reference "
                        "FILE (e.g. the training data) to compare with, or export the model again")
    try:
        ok = (list(profile["labels"]) == list(labels) and all(len(profile[k]["shares"]) == len(profile[k]["edges"]) + 1
                                                             and len(profile[k]["quantiles"]) == len(QUANTILES)
                                                             for k in ("length", "confidence"))
              and 0 <= float(profile["oov_rate"]) <= 1 and 0 <= float(profile["nothing_share"]) <= 1)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{where}: the data profile is damaged or does not match the model's labels; export the "
                        "model again, or pass --reference FILE")
    return profile
