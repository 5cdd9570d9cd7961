"""Evaluation reports: sklearn ``classification_report``, JSON summary, confusion matrix and curves."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from sentiment_tf.core import atomic

log = logging.getLogger(__name__)

_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


@dataclasses.dataclass
class Evaluation:
    """Test-set results: the printable report plus the numbers behind it."""

    text: str
    accuracy: float
    weighted_f1: float
    macro_f1: float
    per_label: dict[str, Any]
    confusion: list[list[int]]
    labels: list[str]
    support: int

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "weighted_f1": self.weighted_f1, "macro_f1": self.macro_f1,
                "support": self.support, "labels": self.labels, "per_label": self.per_label,
                "confusion_matrix": self.confusion}


def evaluate(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> Evaluation:
    """Scores predicted probabilities against integer labels (ids index ``labels``)."""
    y_pred = np.asarray(probs).argmax(axis=-1)
    ids = list(range(len(labels)))
    text = classification_report(y_true, y_pred, labels=ids, target_names=labels, digits=4, zero_division=0)
    as_dict = classification_report(y_true, y_pred, labels=ids, target_names=labels, digits=4,
                                    zero_division=0, output_dict=True)
    return Evaluation(
        text=text,
        accuracy=float(accuracy_score(y_true, y_pred)),
        weighted_f1=float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        macro_f1=float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        per_label={name: as_dict[name] for name in labels},
        confusion=confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        labels=list(labels),
        support=int(len(y_true)),
    )


def by_domain(y_true: np.ndarray, probs: np.ndarray, domains: Any, labels: list[str]) -> tuple[str, dict[str, Any]]:
    """Accuracy and weighted F1 per domain: a printable table and its JSON form."""
    y_true, domains = np.asarray(y_true), np.asarray(domains, dtype=object)
    y_pred = np.asarray(probs).argmax(axis=-1)
    ids = list(range(len(labels)))
    rows: dict[str, Any] = {}
    for name in sorted(set(domains), key=str):
        sel = domains == name
        rows[str(name)] = {"accuracy": float(accuracy_score(y_true[sel], y_pred[sel])),
                           "weighted_f1": float(f1_score(y_true[sel], y_pred[sel], labels=ids, average="weighted",
                                                         zero_division=0)),
                           "support": int(sel.sum())}
    width = max([len("domain")] + [len(k) for k in rows]) + 2
    lines = [f"{'domain':<{width}}{'accuracy':>10}{'weighted F1':>13}{'support':>9}"]
    lines += [f"{k:<{width}}{v['accuracy']:>10.4f}{v['weighted_f1']:>13.4f}{v['support']:>9d}" for k, v in rows.items()]
    return "\n".join(lines), rows


BUNDLED_FONT = Path(__file__).parent / "fonts" / "DroidSansFallback.ttf"  # Apache-2.0, see fonts/README.md


def cjk_font() -> str:
    """A font family that draws Chinese: an installed CJK font, else the bundled Droid Sans Fallback,
    registered with matplotlib now (no font-cache rebuild needed)."""
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    installed = next((name for name in _CJK_FONTS if name in available), None)
    if installed:
        return installed
    name = font_manager.FontProperties(fname=BUNDLED_FONT).get_name()
    if name not in available:
        font_manager.fontManager.addfont(str(BUNDLED_FONT))
    return name


def chinese_rc() -> dict:
    """matplotlib settings that draw Chinese text (for one plot: ``matplotlib.rc_context(chinese_rc())``):
    Latin from matplotlib's own DejaVu Sans, every glyph it lacks from the CJK font (glyph fallback;
    the bundled font has no Latin letters)."""
    return {"font.family": ["DejaVu Sans", cjk_font()]}  # fallback runs over font.family's entries


def plot_confusion(ev: Evaluation, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    names = ev.labels
    with matplotlib.rc_context(chinese_rc()):
        fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2.5))
        ConfusionMatrixDisplay(np.array(ev.confusion), display_labels=names).plot(ax=ax, cmap="Blues",
                                                                               colorbar=False)
        ax.set_title(f"Test confusion matrix (accuracy {ev.accuracy:.4f})")
        atomic.savefig(fig, path)
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in ("loss", "accuracy") if m in history]
    # The epoch early stopping restores: the lowest validation loss.
    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        epochs = list(range(1, len(history[metric]) + 1))
        ax.plot(epochs, history[metric], marker="o", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        if best is not None:
            ax.axvline(best, color="grey", ls="--", lw=1, label=f"restored (epoch {best})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, len(epochs) + 0.5)  # a 1-epoch run is a visible point, not an empty axis
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    atomic.savefig(fig, path)
    plt.close(fig)


def write_reports(run_dir: str | Path, ev: Evaluation, history: dict[str, list[float]] | None,
                  extra: dict[str, Any] | None = None) -> None:
    """report.txt, report.json, confusion_matrix.png and training_curves.png in ``run_dir``."""
    run_dir = Path(run_dir)
    mapping = "\n".join(f"  {i}: {name}" for i, name in enumerate(ev.labels))
    atomic.write_text(run_dir / "report.txt", f"{ev.text}\nlabel ids:\n{mapping}\n")
    atomic.write_json(run_dir / "report.json", {**ev.to_json(), **(extra or {}),
                                               "history": history or {}})
    plot_confusion(ev, run_dir / "confusion_matrix.png")
    if history:
        plot_history(history, run_dir / "training_curves.png")
