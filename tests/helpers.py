"""Test helpers shared by the export, predict and train tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO

_LOAD_AND_RUN = """
import json, sys
import numpy as np, tensorflow as tf
try:
    import tensorflow_text  # registers the tokenizer ops of BERT exports
except ImportError:
    pass
sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = json.load(open(sys.argv[2], encoding="utf-8"))
out = sig(text=tf.constant(texts))
np.save(sys.argv[3], out["probabilities"].numpy())
print(json.dumps([s.decode() for s in out["label"].numpy()], ensure_ascii=False))
"""


def serve_in_fresh_process(export_dir: Path, segmented: list[str], tmp: Path) -> tuple[np.ndarray, list[str]]:
    """Loads an export in a new Python process (nothing shared with the trainer) and runs it."""
    texts, probs = tmp / "texts.json", tmp / "probs.npy"
    texts.write_text(json.dumps(segmented, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(export_dir), str(texts), str(probs)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(probs), json.loads(proc.stdout.strip().splitlines()[-1])


def assert_export_matches(model, lookup, export_dir: Path, segmented: list[str], labels: list[str],
                          max_tokens: int, tmp: Path, atol: float = 1e-5) -> None:
    """The SavedModel, loaded in a fresh process, gives the Keras model's probabilities and labels."""
    from sentiment_tf.models import lstm

    expected = lstm.predict_proba(model, segmented, lookup, max_tokens)
    got, names = serve_in_fresh_process(export_dir, segmented, tmp)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    assert names == [labels[i] for i in expected.argmax(-1)]


def assert_training_resumes(callbacks_module, args: list[str], run: Path, out: Path, monkeypatch) -> None:
    """`train.main(args)` (3 epochs) crashes after epoch 1; `--resume run` then trains epochs 2–3 only,
    exports, removes the backup, and a second `--resume` is refused.

    ``callbacks_module`` is the Keras flavour's callbacks (keras.callbacks or tf_keras.callbacks).
    """
    import pytest

    from sentiment_tf import train, training
    from sentiment_tf.errors import UserError

    class Crash(Exception):
        pass

    class CrashAfterFirstEpoch(callbacks_module.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Crash("power cut")

    original = training.standard_callbacks
    # The crash comes after BackupAndRestore has saved epoch 1 (callbacks run in order).
    monkeypatch.setattr(training, "standard_callbacks", lambda *a, **k: original(*a, **k) + [CrashAfterFirstEpoch()])
    with pytest.raises(Crash):
        train.main(args)
    assert (run / "backup").is_dir() and not out.exists()

    monkeypatch.setattr(training, "standard_callbacks", original)
    assert train.main(["--resume", str(run)]) == 0
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert len(report["history"]["loss"]) == 2  # epochs 2 and 3 only: epoch 1 came from the backup
    assert (out / "1").is_dir() and not (run / "backup").exists()
    with pytest.raises(UserError, match="already finished"):
        train.main(["--resume", str(run)])


def pytorch_state(tf_dir: Path) -> dict[str, np.ndarray]:
    """A TF checkpoint's weights as ``BertForSequenceClassification`` saves them (PyTorch names and
    layout), made without torch."""
    from transformers import TFBertForSequenceClassification
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    model = TFBertForSequenceClassification.from_pretrained(str(tf_dir))
    state = {}
    for w in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
        value = w.numpy()
        state[name] = np.ascontiguousarray(value.T if transpose.name == "SIMPLE" else value)
    return state
