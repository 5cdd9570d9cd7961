"""Report plots: Chinese label names drawn with a CJK font on any machine; readable training curves."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from sentiment_tf.evaluation import report

LABELS = ["正面", "负面", "中性"]


def test_confusion_matrix_draws_chinese_labels_with_a_cjk_font_even_without_one_installed(tmp_path: Path):
    """In a process whose matplotlib knows no CJK font (the font list is emptied of them, as on a bare
    machine), the confusion matrix's tick labels are rendered with the bundled font: the font that
    draws them has every glyph, and rendering warns of no missing glyph."""
    script = textwrap.dedent(f"""
        import warnings
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import font_manager
        from matplotlib.ft2font import FT2Font
        from sentiment_tf.evaluation import report
        font_manager.fontManager.ttflist = [f for f in font_manager.fontManager.ttflist
                                            if f.name not in report._CJK_FONTS]
        captured = []
        original = report.atomic.savefig
        def savefig(fig, path):
            captured.extend(fig.axes[0].get_xticklabels())
            original(fig, path)
        report.atomic.savefig = savefig
        ev = report.evaluate([0, 1, 2, 1], [[.9, .05, .05], [.1, .8, .1], [.2, .2, .6], [.6, .3, .1]], {LABELS!r})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            report.plot_confusion(ev, {str(tmp_path / "cm.png")!r})
        missing = [str(w.message) for w in seen if "missing from" in str(w.message)]
        assert not missing, missing
        texts = [t.get_text() for t in captured]
        assert texts == {LABELS!r}, texts
        # The fonts the labels are drawn with (glyph fallback, in order): the bundled one has every character.
        with matplotlib.rc_context(report.chinese_rc()):
            chain = font_manager.fontManager._find_fonts_by_props(captured[0].get_fontproperties())
        assert str(report.BUNDLED_FONT) in chain, chain
        font = FT2Font(str(report.BUNDLED_FONT))
        assert all(font.get_char_index(ord(c)) for c in "".join(texts))
        print("OK", chain)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
    assert (tmp_path / "cm.png").stat().st_size > 5000


def test_training_curves_have_integer_epochs_and_mark_the_restored_epoch(tmp_path: Path, monkeypatch):
    captured = {}
    original = report.atomic.savefig

    def savefig(fig, path):
        captured["fig"] = fig
        original(fig, path)

    monkeypatch.setattr(report.atomic, "savefig", savefig)
    history = {"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7], "accuracy": [0.5, 0.7, 0.8],
               "val_accuracy": [0.55, 0.66, 0.64]}
    report.plot_history(history, tmp_path / "curves.png")
    ax = captured["fig"].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    restored = [line for line in ax.get_lines() if line.get_label().startswith("restored")]
    assert restored and np.allclose(restored[0].get_xdata(), 2)  # the lowest validation loss
    # A 1-epoch run: the point is inside the axis.
    report.plot_history({"loss": [0.7], "val_loss": [0.6]}, tmp_path / "one.png")
    ax = captured["fig"].axes[0]
    assert ax.get_xlim()[0] < 1 < ax.get_xlim()[1]
