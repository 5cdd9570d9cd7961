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
    from sentiment_tf.models.lstm import classifier as lstm

    expected = lstm.predict_proba(model, segmented, lookup, max_tokens)
    got, names = serve_in_fresh_process(export_dir, segmented, tmp)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    assert names == [labels[i] for i in expected.argmax(-1)]


def assert_training_resumes(callbacks_module, args: list[str], run: Path, out: Path, monkeypatch,
                            crash_after: int = 1, atol: float = 1e-4) -> None:
    """A run of `train.main(args)` that crashes after epoch ``crash_after`` and is then resumed with
    `--resume run` equals the uninterrupted run: the same losses and metrics per epoch (within
    ``atol``), the same history length, the same restored best epoch (so the same test accuracy);
    its backup is removed and a second `--resume` is refused.

    ``callbacks_module`` is the Keras flavour's callbacks (keras.callbacks or tf_keras.callbacks).
    """
    import pytest

    from sentiment_tf import train
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.models import training

    ref_run, ref_out = run.parent / f"{run.name}-uninterrupted", out.parent / f"{out.name}-uninterrupted"
    swap = {str(run): str(ref_run), str(out): str(ref_out)}
    assert train.main([swap.get(a, a) for a in args]) == 0
    reference = json.loads((ref_run / "report.json").read_text(encoding="utf-8"))
    if crash_after == -1:  # the epoch early stopping ended the run at: nothing is left to train
        crash_after = len(reference["history"]["loss"])
        assert crash_after < int(args[len(args) - 1 - args[::-1].index("--epochs") + 1]), "it must stop early"

    class Crash(Exception):
        pass

    class CrashAfter(callbacks_module.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == crash_after:
                raise Crash("power cut")

    original = training.standard_callbacks
    # The crash comes after the backup of that epoch was saved (callbacks run in order).
    monkeypatch.setattr(training, "standard_callbacks", lambda *a, **k: original(*a, **k) + [CrashAfter()])
    with pytest.raises(Crash):
        train.main(args)
    assert (run / "backup").is_dir() and not out.exists()

    monkeypatch.setattr(training, "standard_callbacks", original)
    assert train.main(["--resume", str(run)]) == 0
    resumed = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert resumed["history"].keys() == reference["history"].keys()
    for key, values in reference["history"].items():
        np.testing.assert_allclose(resumed["history"][key], values, atol=atol, rtol=0, err_msg=key)
    assert resumed["accuracy"] == reference["accuracy"]  # the same best epoch restored
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
