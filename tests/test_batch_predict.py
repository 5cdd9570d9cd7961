"""Bulk scoring on Apache Beam: the pipeline on the DirectRunner (two worker processes) scores every
row of several files as `Predictor` does, and sends malformed rows and files to the dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def model(tiny_lstm: Path) -> Path:
    return tiny_lstm  # read only


def _read(pattern: str, directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob(pattern)) for line in path.read_text(encoding="utf-8").splitlines()]


def test_pipeline_scores_every_row_like_predictor_and_dead_letters_the_rest(model, reviews, tmp_path):
    from sentiment_tf import batch_predict
    from sentiment_tf.serving.predictor import Predictor

    data = tmp_path / "in"
    data.mkdir()
    reviews.head(150).assign(id=range(150)).to_csv(data / "part-1.csv", index=False)
    reviews.iloc[150:230][["text"]].to_csv(data / "part-2.tsv", sep="\t", index=False)
    with open(data / "part-3.jsonl", "w", encoding="utf-8") as f:
        for row in ({"text": "这家酒店很干净", "n": 1}, {"text": 42, "n": 2}, {"n": 3}, {"text": "😀！！", "n": 4}):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    pd.DataFrame({"review": ["好"]}).to_csv(data / "part-4.csv", index=False)

    assert batch_predict.main(["--model", str(model), "--input", str(data / "part-*"), "--output",
                               str(tmp_path / "out" / "preds"), "--batch-size", "32", "--chunk-size", "40"]) == 0
    rows = _read("preds-predictions-*.jsonl", tmp_path / "out")
    errors = _read("preds-errors-*.jsonl", tmp_path / "out")
    assert len(rows) == 150 + 80 + 3
    by_source = {(Path(r["source_file"]).name, r["source_row"]): r for r in rows}
    first = [by_source[("part-1.csv", i)] for i in range(150)]
    assert [r["id"] for r in first] == [str(i) for i in range(150)]  # CSV cells are read as text, as predict reads them and first[0]["label"] == reviews["label"].iloc[0]
    texts = [r["text"] for r in first] + [by_source[("part-2.tsv", i)]["text"] for i in range(80)]
    expected = Predictor.load(model).predict(texts)
    got = np.array([[r["pred_prob_正面"], r["pred_prob_负面"]] for r in first + [by_source[("part-2.tsv", i)]
                                                                               for i in range(80)]])
    np.testing.assert_allclose(got, expected.probabilities, atol=2e-6)
    assert [r["pred_label"] for r in first] == expected.labels[:150]
    # Nothing to classify (no text, only emoji and punctuation): no label and why, as every command answers.
    for source_row in (2, 3):
        row = by_source[("part-3.jsonl", source_row)]
        assert row["pred_label"] is None and row["pred_prob_正面"] is None, row
        assert row["pred_reason"] == "no letters, digits or CJK characters to classify"
    assert by_source[("part-3.jsonl", 0)]["pred_label"] in {"正面", "负面"}
    assert "pred_reason" not in by_source[("part-3.jsonl", 0)]
    reasons = {(Path(e["source_file"]).name, e["source_row"]): e["reason"] for e in errors}
    assert reasons == {("part-3.jsonl", 1): "the text in column 'text' is not a string (int)",
                       ("part-4.csv", 0): reasons[("part-4.csv", 0)]}
    assert "column 'text' not found" in reasons[("part-4.csv", 0)]


def test_bad_arguments_are_one_line_errors_before_the_pipeline(model, tmp_path):
    from sentiment_tf import batch_predict
    from sentiment_tf.core.errors import UserError

    with pytest.raises(UserError, match="matches no files"):
        batch_predict.main(["--model", str(model), "--input", str(tmp_path / "nothing-*.csv"), "--output", str(tmp_path / "o")])
    with pytest.raises(UserError, match="not a sentiment_tf model"):
        batch_predict.main(["--model", str(tmp_path), "--input", "x", "--output", str(tmp_path / "o")])
    assert not list(tmp_path.glob("o-*"))
