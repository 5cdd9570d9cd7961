"""Long per-text work shows progress: log lines when stderr is not a terminal, a bar when it is."""

from __future__ import annotations

import io
import logging

from sentiment_tf.core import progress as progress_lib
from sentiment_tf.models.lstm.preprocessor import Tokenizer


def test_segmentation_logs_progress_when_stderr_is_not_a_terminal(monkeypatch, caplog) -> None:
    monkeypatch.setattr(progress_lib, "MIN_TEXTS", 10)
    monkeypatch.setattr(progress_lib, "LOG_EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="sentiment_tf.core.progress"):
        out = Tokenizer().segment(["这家酒店很干净"] * 30)
    lines = [r.getMessage() for r in caplog.records if r.name == "sentiment_tf.core.progress"]
    assert len(out) == 30
    assert lines[0].startswith("segmenting: 1/30 texts (3%)") and lines[-1].startswith("segmenting: 30 texts in ")
    assert len(lines) == 30  # every text (the interval is 0 here), the last as the summary


def test_small_jobs_show_nothing_and_a_terminal_gets_a_bar(monkeypatch, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="sentiment_tf.core.progress"):
        Tokenizer().segment(["好"] * 5)
    assert not [r for r in caplog.records if r.name == "sentiment_tf.core.progress"]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(progress_lib, "MIN_TEXTS", 10)
    monkeypatch.setattr("sys.stderr", term)
    assert list(progress_lib.progress(range(0, 100, 25), 100, "predicting", per_item=25)) == [0, 25, 50, 75]
    assert "predicting:" in term.getvalue() and "/100 [" in term.getvalue()  # a tqdm bar, cleared at the end
