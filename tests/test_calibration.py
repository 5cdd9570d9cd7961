"""Temperature scaling: fitted on validation, applied in Python and inside the exported graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sentiment_tf.evaluation import calibration
from tests.helpers import TINY_MODEL_ARGS, cli


def overconfident(n: int = 6000, k: int = 3, sharpen: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), reported probabilities softmax(sharpen · z): T = sharpen undoes it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true])
    probs = np.exp(sharpen * z) / np.exp(sharpen * z).sum(1, keepdims=True)
    return probs, y


def test_temperature_undoes_overconfidence_and_keeps_every_label():
    probs, y = overconfident()
    temperature = calibration.fit_temperature(probs, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    scaled = calibration.scale(probs, temperature)
    np.testing.assert_array_equal(scaled.argmax(1), probs.argmax(1))  # the argmax cannot change
    assert calibration.ece(scaled, y) < 0.02 < calibration.ece(probs, y)
    assert calibration.brier(scaled, y) < calibration.brier(probs, y)
    assert calibration.nll(scaled, y) < calibration.nll(probs, y)


def test_a_temperature_is_kept_only_where_validation_supports_it():
    # Overconfident with plenty of errors: fitted and kept.
    probs, y = overconfident()
    fitted = calibration.calibrate(probs, y)
    assert fitted.kept_1 is None and fitted.temperature == pytest.approx(3.0, rel=0.1) and fitted.held_out_gain > 0
    # 16 texts without a mistake (issue 32's finetune): the fit runs to its bound; T stays 1, and why.
    clean = np.tile([[0.8, 0.2], [0.3, 0.7]], (8, 1))
    labels = np.tile([0, 1], 8)
    assert calibration.fit_temperature(clean, labels) < 0.1
    small = calibration.calibrate(clean, labels, clean, labels)
    assert small.temperature == 1.0 and "hold 0 misclassified, fewer than the 20" in small.kept_1
    assert small.after == small.before and "temperature kept at 1" in small.summary()
    # Already calibrated (labels drawn from the probabilities): a fit on half does not help the other half.
    rng = np.random.default_rng(1)
    calibrated = rng.dirichlet([1.0, 1.0], 600)
    drawn = np.array([rng.choice(2, p=p) for p in calibrated])
    kept = calibration.calibrate(calibrated, drawn)
    assert kept.temperature == 1.0 and kept.held_out_gain <= 0 and "did not lower the other half" in kept.kept_1


def test_ece_and_brier_on_known_cases():
    probs = np.tile([0.8, 0.2], (10, 1))
    assert calibration.ece(probs, np.array([0] * 8 + [1] * 2)) == pytest.approx(0.0)  # 80 % sure, 80 % right
    assert calibration.ece(probs, np.zeros(10, int)) == pytest.approx(0.2)  # 80 % sure, always right
    # scikit-learn's Brier: two labels, (1 − p)² = 0.2²; more, Σ_k (p_k − [y = k])²
    assert calibration.brier(probs, np.zeros(10, int)) == pytest.approx(0.04)
    assert calibration.brier(np.tile([0.8, 0.1, 0.1], (4, 1)), np.zeros(4, int)) == pytest.approx(0.06)


def test_brier_of_float32_softmax_outputs_does_not_warn():
    """A float32 softmax row sums to 1 only within float32's precision; `train` printed scikit-learn's
    "y_prob values do not sum to one" twice per run."""
    import warnings

    logits = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0.0 < calibration.brier(probs, np.zeros(200, int)) < 2.0


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, reviews, neutral_texts) -> tuple[Path, object]:
    """One `train` run (3 labels, a domain column) shared by the calibration and model-card tests."""
    import pandas as pd

    tmp_path = tmp_path_factory.mktemp("calibrated")
    pos = reviews[reviews.label == "正面"].text.head(120).tolist()
    neg = reviews[reviews.label == "负面"].text.head(120).tolist()
    pd.DataFrame({"review": pos + neg + neutral_texts[:120], "sentiment": ["正面"] * 120 + ["负面"] * 120 + ["中性"] * 120,
                  "source": "test"}).to_csv(tmp_path / "tiny.csv", index=False)
    proc = cli("train", "--data", "tiny.csv", "--text-col", "review", "--label-col", "sentiment", "--domain-col",
               "source", *TINY_MODEL_ARGS, "--epochs", "3", "--val-size", "0.3", "--output", "model", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path, proc


@pytest.mark.slow
def test_train_exports_the_calibrated_model(trained_run):
    """The temperature fitted on validation is in the metadata, in the report, and in the graph: the
    SavedModel returns softmax(log p / T) of the Keras model's p."""
    import keras
    import tensorflow as tf

    from sentiment_tf.export.versions import META_DIR, read_metadata
    from sentiment_tf.models.lstm.classifier import KERAS_FILE

    tmp_path, proc = trained_run
    assert "calibration: temperature" in proc.stdout
    version = tmp_path / "model" / "1"
    metadata = read_metadata(version)
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    temperature = metadata["temperature"]
    assert temperature == report["calibration"]["temperature"] != 1.0
    assert set(report["calibration"]["after"]["test"]) == {"ece", "brier", "nll"}
    assert report["calibration"]["after"]["validation"]["nll"] <= report["calibration"]["before"]["validation"]["nll"]
    assert (tmp_path / "run" / "reliability.png").stat().st_size > 1000

    segmented = ["酒店 很 干净", "太 差 了", "一般"]
    serving = tf.saved_model.load(str(version)).signatures["serving_default"]
    served = serving(text=tf.constant(segmented))["probabilities"].numpy()
    model = keras.saving.load_model(version / META_DIR / KERAS_FILE)
    vocab = (version / META_DIR / "vocab.txt").read_text(encoding="utf-8").split("\n")
    index = {token: i for i, token in enumerate(vocab) if token}
    ids = [[index.get(t, 1) for t in s.split()] for s in segmented]
    width = max(map(len, ids))
    raw = model.predict(np.array([row + [0] * (width - len(row)) for row in ids]), verbose=0)
    np.testing.assert_allclose(served, calibration.scale(raw, temperature), atol=1e-5)


@pytest.mark.slow
def test_no_calibration_keeps_the_raw_probabilities(tiny_csv: Path, tmp_path: Path):
    from sentiment_tf.export.versions import read_metadata

    proc = cli("train", "--data", str(tiny_csv), "--text-col", "review", "--label-col", "sentiment",
               *TINY_MODEL_ARGS, "--no-calibration", "--output", str(tmp_path / "model"),
               "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_metadata(tmp_path / "model" / "1")["temperature"] == 1.0
    assert "calibration" not in json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert not (tmp_path / "run" / "reliability.png").exists()


@pytest.mark.slow
def test_every_export_carries_a_model_card(trained_run):
    """MODEL_CARD.md in assets.extra/ and the run directory, rendered from what the export records."""
    from sentiment_tf.export.versions import read_metadata

    tmp_path, _ = trained_run
    card = (tmp_path / "model" / "1" / "assets.extra" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert (tmp_path / "run" / "MODEL_CARD.md").read_text(encoding="utf-8") == card
    meta = read_metadata(tmp_path / "model" / "1")
    for section in ("## Model details", "## Intended use", "## Training data", "## Preprocessing",
                    "## Training procedure", "## Evaluation", "## Limitations", "## Software versions",
                    "## How to reproduce"):
        assert section in card, section
    assert "`正面`" in card and "`负面`" in card and "`中性`" in card
    assert f"{100 * meta['metrics']['test_accuracy']:.2f} %" in card
    assert f"jieba {meta['tokenizer']['jieba_version']} word mode" in card
    assert f"temperature {meta['temperature']:.4g}" in card
    assert "| test |" in card and "domain" in card  # per-domain results (--domain-col)
    assert "Texts longer than 40 jieba tokens" in card

    # The card's command reproduces the model.
    version = tmp_path / "model" / "1"
    again = cli("train", "--config", "assets.extra/config.json", "--output", str(tmp_path / "again"), "--run-dir",
                str(tmp_path / "run_again"), cwd=version)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_metadata(tmp_path / "again" / "1")["metrics"]["test_accuracy"] == meta["metrics"]["test_accuracy"]
