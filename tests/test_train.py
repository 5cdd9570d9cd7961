"""End to end as a user runs it: train on a small 3-class CSV, then predict with the export."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sentiment_tf import predict
from tests.helpers import TINY_MODEL_ARGS, assert_training_resumes, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes


def test_train_then_predict_end_to_end(tiny_csv: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "models", tmp_path / "run1"
    args = ["--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment", "--model", "lstm",
            "--output", str(out), *TINY_MODEL_ARGS]
    proc = cli("train", *args, "--run-dir", str(run), cwd=tmp_path, process=True)  # TensorFlow's native logs
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Keras warns when a dataset of unknown length ends; ours tell their length, so no false alarm.
    assert "ran out of data" not in proc.stderr + proc.stdout
    # TensorFlow's C++ start-up lines are hidden without --verbose.
    for noise in ("oneDNN", "absl::InitializeLog", "cuInit", "cudart_stub", "Assets written to"):
        assert noise not in proc.stderr, noise
    # The sklearn report, with label names, is printed.
    for name in ("正面", "负面", "中性", "weighted avg", "precision"):
        assert name in proc.stdout
    for name in ("report.txt", "report.json", "config.json", "data_stats.json", "confusion_matrix.png",
                 "training_curves.png", "checkpoints/best.keras"):
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # resume state is removed when the run finishes (the docs say so)
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert report["labels"] == ["中性", "正面", "负面"] and report["support"] == 36
    assert 0.0 <= report["accuracy"] <= 1.0 and report["export"] == str(out / "1")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["DataConfig"]["text_col"] == "review" and config["ModelConfig"]["embedding_dim"] == 8

    # Version 2: a copy of 1 (that exports add versions is test_export's), for --list-versions and lineage.
    shutil.copytree(out / "1", out / "2")

    # predict: texts on the command line (newest version), then a file to CSV.
    proc = cli("predict", "--model", str(out), "这家酒店很干净，服务也好", "新华社北京一月一日电", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in {"正面", "负面", "中性"} for line in lines)
    assert f"model: {out / '2'} (version 2" in proc.stderr  # which version answered
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert predict.main(["--list-versions", "--model", str(out)]) == 0
    rows = [line.split() for line in listing.getvalue().strip().splitlines()[1:]]
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert [r[0] for r in rows] == ["2", "1"] and rows[1][2] == "lstm" and rows[1][3] == f"{report['accuracy']:.4f}"
    assert rows[1][6] == "tiny.csv" and "jieba" in listing.getvalue()
    # A run on other data never silently becomes the newest version (what `tune --data small.csv` then
    # `train --config best.yaml` once did to saved_models/lstm): refused before any run directory.
    small = tmp_path / "small.csv"
    pd.read_csv(tiny_csv).head(200).assign(polarity=lambda f: f.sentiment.replace({"中性": "正面"})).to_csv(small,
                                                                                                         index=False)
    other = ["--text-col", "review", "--output", str(out), *TINY_MODEL_ARGS]
    proc = cli("train", "--data", str(small), "--label-col", "sentiment", *other, "--run-dir", "r3", cwd=tmp_path)
    assert_user_error(proc, "newest version 2 was trained on tiny.csv (test accuracy 0.", "small.csv",
                      "--allow-other-data")
    # Another label set (checked once the labels are known, still before training), and the explicit choice.
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.export.versions import check_lineage

    with pytest.raises(UserError, match=r"labels 中性, 正面, 负面 \(test accuracy 0\.\d+\) and this run on labels 正面, 负面"):
        check_lineage(out, str(tiny_csv), ["正面", "负面"], allow=False)
    check_lineage(out, str(small), ["正面", "负面"], allow=True)  # asked for explicitly: allowed
    check_lineage(out, str(tiny_csv), ["负面", "中性", "正面"], allow=False)  # the same data: a new version
    assert not (tmp_path / "r3").exists() and sorted(p.name for p in out.iterdir()) == ["1", "2"]
    # A file to CSV: the input's columns kept, predictions beside them (a BOM in, a BOM out for Excel).
    preds = tmp_path / "preds.csv"
    bom_input = tmp_path / "bom.csv"
    bom_input.write_bytes(b"\xef\xbb\xbf" + tiny_csv.read_bytes())
    proc = cli("predict", "--model", str(out / "1"), "--input", str(bom_input), "--text-col", "review",
               "--output", str(preds), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert preds.read_bytes().startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(preds, encoding="utf-8-sig")
    assert list(frame.columns) == ["review", "sentiment", "source", "pred_label", "pred_prob_中性",
                                   "pred_prob_正面", "pred_prob_负面"]
    assert len(frame) == 360 and frame["sentiment"].tolist() == pd.read_csv(tiny_csv)["sentiment"].tolist()
    assert abs(frame[["pred_prob_中性", "pred_prob_正面", "pred_prob_负面"]].sum(axis=1) - 1).max() < 1e-4
    # In-process from here: no TensorFlow start-up per call.
    assert predict.main(["--model", str(out), "--input", str(tiny_csv), "--text-col", "review",
                         "--output", str(preds)]) == 0
    assert not preds.read_bytes().startswith(b"\xef\xbb\xbf")  # none in, none out
    assert predict.main(["--model", str(out), "--input", str(tiny_csv), "--text-col", "review",
                         "--output", str(preds), "--excel"]) == 0
    assert preds.read_bytes().startswith(b"\xef\xbb\xbf")

    # Exports and reports get the umask's normal modes (0755/0644 under umask 022), not mkdtemp's 0700.
    from sentiment_tf.core.atomic import dir_mode, file_mode

    for path in [out / "1", out / "1" / "variables", out / "1" / "assets.extra"]:
        assert path.stat().st_mode & 0o777 == dir_mode(), path
    for path in [out / "1" / "saved_model.pb", out / "1" / "assets.extra" / "sentiment_tf.json",
                 run / "report.json", run / "report.txt", run / "config.json", preds]:
        assert path.stat().st_mode & 0o777 == file_mode(), path


def test_unwritable_output_is_refused_before_loading_data(tiny_csv: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    base = ["--data", str(tmp_path / "missing.csv")]  # never read: the output check comes first
    assert_user_error(cli("train", *base, "--output", str(blocker / "models"), cwd=tmp_path),
                      "--output", "is a file, not a directory")
    assert_user_error(cli("train", *base, "--run-dir", str(blocker / "run"), cwd=tmp_path),
                      "--run-dir", "is a file, not a directory")
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_output_directory_is_refused_before_loading_data(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_user_error(cli("train", "--data", str(tmp_path / "missing.csv"), "--output", str(locked / "m"),
                          cwd=tmp_path), "--output", "cannot write in", "Permission denied")


def test_predict_cli_errors(tmp_path: Path) -> None:
    (tmp_path / "not_a_model").mkdir()
    assert_user_error(cli("predict", "--model", str(tmp_path / "not_a_model"), "好", cwd=tmp_path),
                      "is not a sentiment_tf model")
    assert_user_error(cli("predict", "--model", str(tmp_path / "nope"), "好", cwd=tmp_path),
                      "model directory not found")


def test_output_dir_that_is_not_ours_is_refused_before_training(tiny_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    out.mkdir()
    (out / "important.txt").write_text("keep me")
    proc = cli("train", "--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment",
               "--output", str(out), cwd=tmp_path)
    assert_user_error(proc, "not a sentiment_tf export version")
    assert sorted(p.name for p in out.iterdir()) == ["important.txt"]


@pytest.mark.parametrize("crash_after", [-1])
def test_interrupted_training_resumes_to_the_uninterrupted_result(crash_after: int, tiny_csv: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Killed at an epoch boundary and resumed: the same run. -1 is the epoch early stopping ended
    the run at (its resume used to train one epoch more and keep that epoch's weights)."""
    import keras

    run, out = tmp_path / "run", tmp_path / "models"
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment", "--output", str(out),
            "--run-dir", str(run), *TINY_MODEL_ARGS, "--epochs", "8", "--patience", "1",
            "--learning-rate", "0.03"]
    assert_training_resumes(keras.callbacks, args, run, out, monkeypatch, crash_after=crash_after)


@pytest.mark.parametrize("failure", ["disk full"])  # a failed export check: test_export.py
def test_failed_export_keeps_the_model_and_export_run_publishes_it(failure: str, tiny_csv: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A failing export check, or a full disk under --output, is one line naming where the model is kept
    and the command that exports it; `python -m sentiment_tf.publish --run` then publishes exactly that model."""
    import errno

    import numpy as np

    from sentiment_tf import train
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.export import versions as export_lib
    from sentiment_tf.serving.predictor import Predictor

    out, run = tmp_path / "models", tmp_path / "run"
    args = ["--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment", "--output", str(out),
            "--run-dir", str(run), *TINY_MODEL_ARGS]
    original_verifier, original_write = export_lib.signature_verifier, export_lib.write_version

    def failing_verifier(*a, **k):
        def verify(path):
            original_verifier(*a, **k)(path)
            raise export_lib.ExportCheckError("export check failed: simulated")
        return verify

    def full_disk(base, *a, **k):
        if Path(base) == out:
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
        return original_write(base, *a, **k)

    if failure == "export check":
        monkeypatch.setattr(export_lib, "signature_verifier", failing_verifier)
    else:
        monkeypatch.setattr(export_lib, "write_version", full_disk)
    with pytest.raises(UserError) as err:
        train.main(args)
    message = str(err.value)
    assert "\n" not in message and ("simulated" if failure == "export check" else "No space left") in message
    assert f"python -m sentiment_tf.publish --run {run}" in message and str(run / "unverified-export") in message
    assert not out.exists() or not any(out.iterdir())  # nothing published
    assert (run / "unverified-export" / "saved_model.pb").is_file()
    kept = Predictor.load(run / "unverified-export").predict(["这家酒店很干净", "太差了"]).probabilities

    monkeypatch.setattr(export_lib, "signature_verifier", original_verifier)
    monkeypatch.setattr(export_lib, "write_version", original_write)
    proc = cli("publish", "--run", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "1").is_dir() and not (run / "unverified-export").exists()
    published = Predictor.load(out).predict(["这家酒店很干净", "太差了"]).probabilities
    np.testing.assert_allclose(published, kept, atol=1e-6)
    assert_user_error(cli("publish", "--run", str(run), cwd=tmp_path), "unverified-export")


def test_runs_clean_keeps_the_newest_and_never_unfinished_work(tmp_path: Path) -> None:
    import time

    runs = tmp_path / "runs"
    for i, extra in enumerate(["report.json", "report.json", "backup", "unverified-export", "report.json"]):
        run = runs / f"lstm-{i}"
        run.mkdir(parents=True)
        (run / "config.json").write_text("{}")
        if extra == "report.json":
            (run / extra).write_text('{"accuracy": 0.9}')
        else:
            (run / extra).mkdir()
        for path in [run, *run.iterdir()]:
            os.utime(path, (time.time() - 100 * (5 - i),) * 2)  # lstm-4 newest
    (runs / "not-a-run").mkdir()
    proc = cli("runs", "--runs-dir", str(runs), "clean", "--keep", "1", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0 and "would delete" in proc.stdout
    assert len(list(runs.iterdir())) == 6
    proc = cli("runs", "--runs-dir", str(runs), "clean", "--keep", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["lstm-2", "lstm-3", "lstm-4", "not-a-run"]
    listing = cli("runs", "--runs-dir", str(runs), "list", cwd=tmp_path).stdout
    assert "unfinished" in listing and "export failed" in listing and "3 runs" in listing
    assert_user_error(cli("runs", "--runs-dir", str(tmp_path / "nope"), "list", cwd=tmp_path), "no such directory")
