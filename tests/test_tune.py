"""tune: a real Optuna search over the LSTM's options, its best.yaml, resume and input errors."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sentiment_tf import tune
from sentiment_tf.core.errors import UserError
from sentiment_tf.models import training
from tests.helpers import assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

# Small and quick: these are fixed (so not searched); the rest of the LSTM space is searched.
FIXED = ["--epochs", "2", "--embedding-dim", "8", "--rnn-units", "4", "--min-freq", "1", "--max-tokens", "40",
         "--text-col", "review", "--label-col", "sentiment"]


def trials_table(directory: Path) -> pd.DataFrame:
    return pd.read_csv(directory / "trials.csv").drop(columns=["minutes"])


@pytest.fixture(scope="module")
def search_data(tmp_path_factory, reviews, neutral_texts) -> Path:
    from tests.conftest import write_tiny_csv

    return write_tiny_csv(tmp_path_factory.mktemp("tune_data"), reviews, neutral_texts)


@pytest.fixture(scope="module")
def whole(search_data: Path, tmp_path_factory) -> tuple[Path, str]:
    """One uninterrupted 2-trial search (and what it printed), shared by the tests that read it."""
    study = tmp_path_factory.mktemp("tune") / "study"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert tune.main(["--data", str(search_data), "--trials", "2", "--output", str(study), *FIXED]) == 0
    return study, printed.getvalue()


def test_search_writes_ranked_trials_and_a_best_yaml_train_accepts(whole: tuple[Path, str], tmp_path: Path):
    study, out = whole
    table = pd.read_csv(study / "trials.csv")
    assert len(table) == 2 and list(table["rank"]) == [1, 2]
    complete = table[table["state"] == "complete"]
    assert list(complete["val_accuracy"]) == sorted(complete["val_accuracy"], reverse=True)
    # Fixed options are not searched; the searched ones are recorded per trial.
    assert "embedding_dim" not in table and {"dropout", "learning_rate", "tokenizer", "pooling"} <= set(table)
    # Trial 0 is train's defaults, so the table shows what the search gained over them.
    first = table[table["trial"] == 0].iloc[0]
    assert (first["dropout"], first["learning_rate"], first["batch_size"], first["tokenizer"], first["pooling"]) == (
        0.4, 1.5e-3, 64, "word", "last")
    assert "ranked by validation accuracy" in out and "best: trial" in out

    best = yaml.safe_load((study / "best.yaml").read_text(encoding="utf-8"))
    top = complete.iloc[0]
    assert best["TrainConfig"]["learning_rate"] == pytest.approx(top["learning_rate"])
    assert best["ModelConfig"]["pooling"] == top["pooling"] and best["TokenizerConfig"]["tokenizer"] == top["tokenizer"]
    assert best["ModelConfig"]["embedding_dim"] == 8
    assert best["TrainConfig"]["output"] == f"saved_models/{study.name}"  # a model of its own, not saved_models/lstm

    # train --config best.yaml trains with exactly those settings.
    proc = cli("train", "--config", str(study / "best.yaml"), "--output", str(tmp_path / "model"),
               "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = yaml.safe_load((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert saved["TrainConfig"]["learning_rate"] == pytest.approx(top["learning_rate"])
    assert saved["ModelConfig"]["dropout"] == pytest.approx(top["dropout"])


def test_an_interrupted_search_resumes_to_the_uninterrupted_result(search_data: Path, whole: tuple[Path, str],
                                                                  tmp_path: Path):
    args = ["--data", str(search_data), "--trials", "2", *FIXED]

    calls = []

    def interrupt_second_trial(epoch: int, logs: dict) -> None:
        calls.append(epoch)
        if len(calls) == 3:  # trial 0 ran 2 epochs; this is trial 1's first
            raise KeyboardInterrupt

    with training.observe_epochs(interrupt_second_trial), pytest.raises(KeyboardInterrupt):
        tune.main([*args, "--output", str(tmp_path / "cut")])
    assert len(pd.read_csv(tmp_path / "cut" / "trials.csv")) == 1
    assert tune.main(["--resume", str(tmp_path / "cut")]) == 0

    whole, cut = trials_table(whole[0]), trials_table(tmp_path / "cut")
    # The interrupted trial ran again under a new number; otherwise the same trials, scores and ranks.
    for frame in (whole, cut):
        frame.drop(columns=["trial"], inplace=True)
    pd.testing.assert_frame_equal(whole, cut, check_exact=False, atol=1e-6)

    # A resumed study may get a larger budget.
    assert tune.main(["--resume", str(tmp_path / "cut"), "--trials", "3"]) == 0
    assert len(pd.read_csv(tmp_path / "cut" / "trials.csv")) == 3


def test_options_a_language_model_sets_are_not_searched(tiny_csv: Path, tmp_path: Path, reviews):
    from sentiment_tf import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(reviews["text"].head(200)), encoding="utf-8")
    assert pretrain.main(["--model", "lstm", "--corpus", str(corpus), "--output", str(tmp_path / "lm"), "--epochs", "0",
                          "--embedding-dim", "8", "--rnn-units", "4", "--run-dir", str(tmp_path / "lm_run")]) == 0
    search = tune.Search(tune.TuneConfig(trials=1), {"data": str(tiny_csv), "text_col": "review",
                                                     "label_col": "sentiment", "pretrained": str(tmp_path / "lm")})
    assert set(search.space) == {"dropout", "learning_rate", "batch_size", "pooling"}


@pytest.mark.parametrize("args, fragment", [
    (["--trials", "0"], "--trials must be at least 1"),
    (["--timeout", "-5"], "--timeout must be above 0"),
    (["--dropout", "1.5"], "--dropout must be below 1"),
    (["--data", "missing.csv"], "missing.csv"),
    (["--resume", "nowhere"], "--resume nowhere: no tune.json there"),
])
def test_bad_options_are_errors_before_any_write(tiny_csv: Path, tmp_path: Path, args, fragment):
    base = ["--data", str(tiny_csv)] if "--data" not in args else []
    with pytest.raises(UserError, match=re.escape(fragment)):
        tune.main([*base, *FIXED, "--output", str(tmp_path / "study"), *args])
    assert not (tmp_path / "study").exists()


def test_a_study_directory_is_not_reused_without_resume(tiny_csv: Path, tmp_path: Path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.db").write_bytes(b"")
    proc = cli("tune", "--data", str(tiny_csv), "--trials", "1", "--output", str(study), *FIXED, cwd=tmp_path)
    assert_user_error(proc, "already holds a study", "--resume")
