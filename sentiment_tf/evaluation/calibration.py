"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T,
fitted on the validation split by minimising the negative log-likelihood, divides the log-probabilities
before the softmax. It cannot change which label wins, only how sure the model says it is.

Reported with expected calibration error (top-label confidence, 15 equal-width bins, as in the
paper), Brier score (scikit-learn's) and a reliability diagram (scikit-learn's
``calibration_curve``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sentiment_tf.core import atomic

BINS = 15
HELD_OUT_REPEATS = 10  # random halvings of validation behind the check that a fitted T generalises
# The fit is driven by the misclassified texts: with fewer, T runs towards its bound (a 16-text finetune
# validation without errors gave T = 0.05 and 1.48 more test log-loss; bench/bench_calibration_rule.py).
MIN_ERRORS = 20
_TINY = 1e-12  # log(0) guard: a float32 softmax can round a probability to exactly 0


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T), in float64."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(np.asarray(probs, np.float64)[np.arange(len(y)), y], _TINY, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] minimising validation NLL (bounded 1-D search over log T; scipy)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.int64)
    result = minimize_scalar(lambda log_t: nll(scale(probs, float(np.exp(log_t))), y),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of the top label: Σ_b (n_b / n)·|accuracy_b − confidence_b|."""
    probs, y = np.asarray(probs), np.asarray(y)
    confidence, correct = probs.max(axis=-1), (probs.argmax(axis=-1) == y).astype(np.float64)
    # Bin b holds confidences in ((b-1)/B, b/B]; the lowest bin also takes 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's Brier score: two labels, the usual (1 − p_true)²; more, Σ_k (p_k − [y = k])²."""
    from sklearn.metrics import brier_score_loss

    probs = np.asarray(probs, dtype=np.float64)
    # float32 softmax rows sum to 1 within 1e-7, past sklearn's float64 tolerance: it would warn on every run
    probs = probs / probs.sum(axis=1, keepdims=True)
    return float(brier_score_loss(np.asarray(y), probs, labels=list(range(probs.shape[1]))))


def held_out_gain(probs: np.ndarray, y: np.ndarray, repeats: int = HELD_OUT_REPEATS, seed: int = 0) -> float:
    """How much log-loss a temperature fitted on one half of validation saves on the other half, averaged
    over ``repeats`` random halvings (both ways): ≤ 0 means this validation set cannot support a fit."""
    probs, y = np.asarray(probs), np.asarray(y, dtype=np.int64)
    if len(y) < 4:
        return 0.0
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(repeats):
        order = rng.permutation(len(y))
        halves = order[: len(y) // 2], order[len(y) // 2:]
        for fit, held in (halves, halves[::-1]):
            t = fit_temperature(probs[fit], y[fit])
            gains.append(nll(probs[held], y[held]) - nll(scale(probs[held], t), y[held]))
    return float(np.mean(gains))


@dataclasses.dataclass
class Calibration:
    """The temperature and what it did, on validation (where it was fitted) and test; ``kept_1``
    says why T stayed 1 when the fit was not used."""

    temperature: float
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]
    fitted: float | None = None  # the T that minimises validation log-loss
    held_out_gain: float | None = None  # log-loss it saved on held-out halves of validation
    kept_1: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        split = "test" if "test" in self.after else "validation"
        b, a = self.before[split], self.after[split]
        if self.kept_1:
            return f"calibration: temperature kept at 1: {self.kept_1}; {split} ECE {b['ece']:.4f}"
        return (f"calibration: temperature {self.temperature:.3f}; {split} ECE {b['ece']:.4f} → {a['ece']:.4f}, "
                f"Brier {b['brier']:.4f} → {a['brier']:.4f}, NLL {b['nll']:.4f} → {a['nll']:.4f}")


def metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"ece": ece(probs, y), "brier": brier(probs, y), "nll": nll(probs, y)}


def calibrate(val_probs: np.ndarray, val_y: np.ndarray, test_probs: np.ndarray | None = None,
              test_y: np.ndarray | None = None) -> Calibration:
    """Fits T on validation and keeps it only where validation supports it: at least ``MIN_ERRORS``
    misclassified texts, and a T fitted on half of it must lower the other half's log-loss on average
    (``held_out_gain`` > 0); else T stays 1 and the report says why. Reports before/after on validation and (when given) test."""
    fitted = fit_temperature(val_probs, val_y)
    errors = int((np.asarray(val_probs).argmax(-1) != np.asarray(val_y)).sum())
    gain = held_out_gain(val_probs, val_y) if errors >= MIN_ERRORS else None
    kept_1 = None
    if errors < MIN_ERRORS:
        kept_1 = (f"the {len(val_y)} validation texts hold {errors} misclassified, fewer than the {MIN_ERRORS} a "
                  f"temperature needs (the fit on them, {fitted:.3f}, would be noise)")
    elif gain <= 0:
        kept_1 = (f"a temperature fitted on half of the {len(val_y)} validation texts did not lower the other "
                  f"half's log-loss (mean change {-gain:+.4f}); the fit on all of them ({fitted:.3f}) would be noise")
    temperature = 1.0 if kept_1 else fitted
    splits = {"validation": (val_probs, val_y)}
    if test_probs is not None and len(test_probs):
        splits["test"] = (test_probs, test_y)
    return Calibration(temperature,
                       before={name: metrics(p, y) for name, (p, y) in splits.items()},
                       after={name: metrics(scale(p, temperature), y) for name, (p, y) in splits.items()},
                       fitted=fitted, held_out_gain=gain, kept_1=kept_1)


def reliability_diagram(probs_before: np.ndarray, probs_after: np.ndarray, y: np.ndarray, path: str | Path,
                        title: str = "test") -> None:
    """Accuracy against top-label confidence per bin, before and after scaling (scikit-learn's
    ``calibration_curve``), with each curve's ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    for name, probs, marker in (("before", probs_before, "o"), ("after", probs_after, "s")):
        probs = np.asarray(probs)
        correct = (probs.argmax(axis=-1) == np.asarray(y)).astype(int)
        if correct.min() == correct.max():  # calibration_curve needs both outcomes
            continue
        accuracy, confidence = calibration_curve(correct, probs.max(axis=-1), n_bins=BINS, strategy="uniform")
        ax.plot(confidence, accuracy, marker=marker, label=f"{name} (ECE {ece(probs, y):.3f})")
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"reliability diagram ({title})")
    atomic.savefig(fig, path)
    plt.close(fig)


def calibrate_trained(trained, val, test, path: Path | None = None) -> tuple[Calibration, np.ndarray]:
    """Fits ``trained``'s temperature on the ``val`` split (frames with ``text`` and ``y``) and sets
    it; returns the calibration and the calibrated test probabilities. ``path``: reliability PNG."""
    trained.temperature = 1.0
    val_raw = trained.predict_proba(val["text"].tolist())
    test_raw = trained.predict_proba(test["text"].tolist())
    result = calibrate(val_raw, val["y"].to_numpy(), test_raw, test["y"].to_numpy())
    trained.temperature = result.temperature
    test_probs = scale(test_raw, result.temperature).astype(np.float32)
    if path is not None and len(test):
        reliability_diagram(test_raw, test_probs, test["y"].to_numpy(), path)
    return result, test_probs
