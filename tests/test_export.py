"""SavedModel export: parity with Keras in a fresh process, atomicity, versions, metadata checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sentiment_tf.core.config import ModelConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.export import versions as export_lib
from sentiment_tf.models.lstm.preprocessor import Preprocessor, Tokenizer, build_vocabulary
from sentiment_tf.serving.predictor import Predictor
from tests.helpers import ALLOWED_TEXT_OPS, assert_export_matches, assert_user_error, cli, saved_model_ops

GOLDEN_SEGMENTED = Path(__file__).parent / "golden" / "lstm_segmented_export"

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

LABELS = ["中性", "正面", "负面"]
TEXTS = ["这家酒店很干净，服务也好", "房间太小了，还很吵，再也不来了", "今天下午三点开会", "早餐丰富位置方便",
         "空调坏了也没人修", "一般般吧", "物流很快包装完好", "质量太差了"] * 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny word-level model with a user dictionary, fitted for a few steps (non-trivial weights)."""
    import keras

    from sentiment_tf.models.lstm import classifier as lstm

    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("model")
    udict = tmp / "user_dict.txt"
    udict.write_text("再也不来 10 v\n", encoding="utf-8")
    tokenizer = Tokenizer("word", user_dict=udict)
    segmented = tokenizer.segment(TEXTS)
    vocab = build_vocabulary(segmented, min_freq=1)
    preprocessor = Preprocessor(tokenizer, vocab, 20)
    model = lstm.build_model(ModelConfig(embedding_dim=8, rnn_units=4), len(vocab) + 2, len(LABELS))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    y = np.arange(len(TEXTS)) % 3
    model.fit(preprocessor.dataset(segmented, y, 8), epochs=3, verbose=0)
    return model, preprocessor, vocab, tokenizer


def _export(trained, base: Path) -> Path:
    from sentiment_tf.models.lstm import classifier as lstm

    model, preprocessor, vocab, tokenizer = trained
    return lstm.export(model, preprocessor, LABELS, base, config={"test": True}, metrics={}, check_texts=TEXTS[:8])


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export for the tests that only read it (or damage a copy of it)."""
    return _export(trained, tmp_path_factory.mktemp("exported") / "lstm")


def _copy_of(exported: Path, tmp_path: Path) -> Path:
    """A copy of the shared export to damage (an export costs seconds; a copy, milliseconds)."""
    import shutil

    shutil.copytree(exported.parent, tmp_path / "lstm")
    return tmp_path / "lstm" / exported.name


def test_export_matches_keras_in_fresh_process(trained, exported: Path, tmp_path: Path) -> None:
    """Raw text in, the trained model's probabilities out, in a process that never imports sentiment_tf."""
    model, preprocessor, _, tokenizer = trained
    version = exported
    # Unknown words, markup, full-width forms, an empty text and one past max_tokens (truncated).
    extra = ["全新的未知词语", "", "   ", "<b>ＡＢＣ</b>&amp; 再也不来了😀", "很好" * 60]
    assert_export_matches(model, preprocessor, version, TEXTS + extra, LABELS, tmp_path)


def test_export_uses_only_ops_stock_tf_serving_has(exported: Path) -> None:
    ops = saved_model_ops(exported)
    non_core = set(ops["non_core"])
    assert non_core <= ALLOWED_TEXT_OPS, f"ops TF Serving lacks: {sorted(non_core - ALLOWED_TEXT_OPS)}"
    assert {"RegexSplitWithOffsets", "NormalizeUTF8", "CaseFoldUTF8", "LookupTableFindV2"} <= set(ops["all"])


def test_export_ships_what_serving_needs(trained, exported: Path) -> None:
    import tensorflow as tf

    _, preprocessor, vocab, tokenizer = trained
    version = exported
    meta = export_lib.read_metadata(version)
    assert meta["labels"] == LABELS and meta["label2id"] == {"中性": 0, "正面": 1, "负面": 2}
    assert meta["tokenizer"]["jieba_version"] and meta["tokenizer"]["user_dict_sha256"]
    assert meta["input_format"] == "raw"
    lines = (version / "assets.extra" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[:2] == ["", "[UNK]"] and lines[2:2 + len(vocab)] == vocab
    # The user dictionary is in the graph: its tokenize signature segments with it, as jieba does.
    predictor = Predictor.load(version.parent)
    assert predictor.prepare(TEXTS[:3]) == TEXTS[:3]  # raw text goes in
    texts = ["房间太小了，再也不来了", *TEXTS[:8], "", "很好" * 30]
    out = predictor._loaded.signatures["tokenize"](text=tf.constant(texts))
    rows = [[t.decode() for t in row[:n]] for row, n in zip(out["tokens"].numpy(), out["length"].numpy())]
    assert "再也不来" in rows[0]
    assert rows == [preprocessor.kept_tokens(s) for s in tokenizer.segment(texts)]
    assert rows[-2] == ["[UNK]"] and len(rows[-1]) == 20  # max_tokens


def test_versions_only_go_up_and_are_never_overwritten(trained, tmp_path: Path) -> None:
    base = tmp_path / "lstm"
    first = _export(trained, base)
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    second = _export(trained, base)
    assert (first.name, second.name) == ("1", "2")
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp
    assert Predictor.load(base).version_dir == second  # base dir → newest version


@pytest.mark.parametrize("stage", ["write", "verify"])
def test_failed_export_leaves_no_version(trained, tmp_path: Path, stage: str) -> None:
    base = tmp_path / "lstm"
    _export(trained, base)

    def write(path: Path) -> None:
        (path / "saved_model.pb").write_bytes(b"partial")
        if stage == "write":
            raise OSError("disk full")

    def verify(path: Path) -> None:
        raise RuntimeError("exported model disagrees")

    with pytest.raises((OSError, RuntimeError)):
        export_lib.write_version(base, write, {"family": "lstm"}, {}, verify)
    assert sorted(os.listdir(base)) == ["1"]  # no version 2, no temporary directory left behind


def test_foreign_directories_are_refused(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a sentiment_tf export version"):
        export_lib.check_base_dir(tmp_path / "other")
    with pytest.raises(UserError, match="is not a sentiment_tf model"):
        Predictor.load(tmp_path / "other")
    with pytest.raises(UserError, match="model directory not found"):
        Predictor.load(tmp_path / "missing")


def _segmented_export(tmp_path: Path) -> Path:
    """A copy of an export written before jieba ran in the graph (its signature takes segmented text)."""
    import shutil

    shutil.copytree(GOLDEN_SEGMENTED, tmp_path / "old")
    return tmp_path / "old" / "1"


def _edit_metadata(version: Path, edit) -> None:
    meta_path = export_lib.metadata_path(version)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    edit(meta)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")


def test_tokenizer_mismatch_is_refused_where_python_segments(exported, tmp_path: Path) -> None:
    """A raw-text export serves without Python's jieba, so another jieba version does not stop it; what
    still segments in Python (tokens for `monitor`, `explain`, `finetune`) refuses, and so does loading an
    export that takes segmented text."""
    version = _copy_of(exported, tmp_path)
    expected = Predictor.load(version).predict(TEXTS[:2]).probabilities
    _edit_metadata(version, lambda meta: meta["tokenizer"].update(jieba_version="0.39"))
    predictor = Predictor.load(version)
    np.testing.assert_allclose(predictor.predict(TEXTS[:2]).probabilities, expected, atol=1e-6)
    with pytest.raises(UserError, match="jieba_version: model=0.39"):
        predictor.tokens(TEXTS[:2])
    old = _segmented_export(tmp_path)
    _edit_metadata(old, lambda meta: meta["tokenizer"].update(jieba_version="0.39"))
    with pytest.raises(UserError, match="jieba_version: model=0.39"):
        Predictor.load(old)
    _edit_metadata(old, lambda meta: meta.update(format="other"))
    with pytest.raises(UserError, match="not a sentiment_tf model"):
        Predictor.load(old)


def test_a_damaged_temperature_is_refused_on_load(exported, tmp_path: Path) -> None:
    version = _copy_of(exported, tmp_path)
    meta_path = export_lib.metadata_path(version)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["temperature"] == 1.0  # exported without calibration
    for bad in (0, -1.5, "2", None):
        meta_path.write_text(json.dumps({**meta, "temperature": bad}), encoding="utf-8")
        with pytest.raises(UserError, match="temperature must be a positive number"):
            Predictor.load(version)


def test_edited_user_dict_in_export_is_refused(exported, tmp_path: Path) -> None:
    version = _copy_of(exported, tmp_path)
    (version / "assets.extra" / "user_dict.txt").write_text("别的词 5 n\n", encoding="utf-8")
    with pytest.raises(UserError, match="user_dict_sha256"):
        Predictor.load(version).tokens(TEXTS[:1])
    old = _segmented_export(tmp_path)
    (old / "assets.extra" / "user_dict.txt").write_text("别的词 5 n\n", encoding="utf-8")
    with pytest.raises(UserError, match="user_dict_sha256"):
        Predictor.load(old)


@pytest.mark.parametrize("damage, named", [
    ("saved_model.pb", "saved_model.pb"),
    ("variables/variables.data-00000-of-00001", "variables"),
    ("variables/variables.index", "variables"),
    ("assets.extra/keras_model.keras", "keras_model.keras"),
])
def test_damaged_export_is_one_line_naming_the_file(exported, tmp_path: Path, damage: str, named: str) -> None:
    """A truncated file (a copy cut short, a full disk) is refused by predict and finetune without a traceback."""
    from sentiment_tf.models.lstm import classifier as lstm
    from tests.helpers import assert_user_error, cli

    version = _copy_of(exported, tmp_path)
    path = version / damage
    with open(path, "r+b") as f:
        f.truncate(max(8, path.stat().st_size // 3))
    meta = export_lib.read_metadata(version)
    if named == "keras_model.keras":
        with pytest.raises(UserError, match=r"keras_model\.keras: cannot load .* damaged"):
            lstm.load_trained(version, meta)
        return
    with pytest.raises(UserError, match="damaged") as err:
        Predictor.load(version)
    assert str(err.value).startswith(str(version / named)) and "\n" not in str(err.value)
    assert_user_error(cli("predict", "--model", str(version), "好", cwd=tmp_path), str(version / named), "damaged")


def test_leftovers_of_killed_exports_are_removed_at_the_next_export(trained, tmp_path: Path) -> None:
    """A killed export leaves its hidden temporary directory; the next export removes it, but never the
    directory of an export still running."""
    import signal
    import subprocess
    import sys

    from tests.helpers import REPO

    base = tmp_path / "lstm"
    _export(trained, base)
    script = ("import sys, time\nfrom sentiment_tf.export import versions as export\n"
              "def write(path):\n    (path / 'saved_model.pb').write_bytes(b'partial')\n    print('writing', flush=True)\n"
              "    time.sleep(600)\n"
              f"export.write_version({str(base)!r}, write, {{}}, {{}}, lambda p: None)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed, running = (subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
                       for _ in range(2))
    try:
        for proc in (killed, running):
            assert proc.stdout.readline().strip() == "writing"
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        temps = sorted(p.name for p in base.iterdir() if p.name.startswith(".export-"))
        assert len(temps) == 2
        _export(trained, base)
        left = sorted(p.name for p in base.iterdir() if p.name.startswith(".export-"))
        assert left == [t for t in temps if t.startswith(f".export-{running.pid}@")]
        assert (base / "2").is_dir()
    finally:
        running.kill()
        running.wait(timeout=30)


def test_an_lstm_export_has_no_hugging_face_form(exported: Path, tmp_path: Path) -> None:
    proc = cli("publish", "--hf", str(exported), "--output", str(tmp_path / "hf"), cwd=tmp_path)
    assert_user_error(proc, "an lstm export has no Hugging Face transformers form", "only BERT")
    assert not (tmp_path / "hf").exists()


def test_predict_takes_one_string_as_one_text(exported: Path) -> None:
    predictor = Predictor.load(exported)
    one = predictor.predict("这家酒店很干净")
    assert len(one.labels) == 1  # not one prediction per character
    assert one.probabilities.tolist() == predictor.predict(["这家酒店很干净"]).probabilities.tolist()


def test_failed_export_check_keeps_the_model_and_publish_exports_it(trained, tmp_path: Path, monkeypatch) -> None:
    """A failing export check is one line naming where the model is kept and the command that exports it;
    `python -m sentiment_tf.publish --run` then publishes exactly that model."""
    from sentiment_tf import publish
    from sentiment_tf.models.lstm import classifier as lstm

    model, preprocessor, vocab, tokenizer = trained
    model_obj = lstm.TrainedLSTM(model, preprocessor, LABELS, {})
    out, run = tmp_path / "models", tmp_path / "run"
    run.mkdir()
    original = export_lib.signature_verifier

    def failing(*a, **k):
        def verify(path):
            original(*a, **k)(path)
            raise export_lib.ExportCheckError("export check failed: simulated")
        return verify

    monkeypatch.setattr(export_lib, "signature_verifier", failing)
    with pytest.raises(UserError) as err:
        export_lib.publish(model_obj, out, {"test": True}, {}, TEXTS[:8], run)
    message = str(err.value)
    assert "\n" not in message and "simulated" in message and "nothing was published" in message
    assert f"python -m sentiment_tf.publish --run {run}" in message and str(run / "unverified-export") in message
    assert not out.exists() or not any(out.iterdir())
    kept = Predictor.load(run / "unverified-export").predict(TEXTS[:4]).probabilities

    monkeypatch.setattr(export_lib, "signature_verifier", original)
    assert publish.main(["--run", str(run)]) == 0
    assert (out / "1").is_dir() and not (run / "unverified-export").exists()
    np.testing.assert_allclose(Predictor.load(out).predict(TEXTS[:4]).probabilities, kept, atol=1e-6)
    with pytest.raises(UserError, match="unverified-export"):
        publish.main(["--run", str(run)])


def test_long_texts_are_scored_as_averaged_windows(exported: Path, tmp_path: Path) -> None:
    """--long-text window: a text past max_tokens (20) is cut into windows of 20 tokens every 10, the last
    ending at its end — spans of the cleaned text for a raw-text export, segmented text for an old one —
    and its probabilities are their mean; a short text is unchanged."""
    from sentiment_tf.data.cleaning import clean_text

    long_text = "，".join(TEXTS) * 2
    for p in (Predictor.load(exported), Predictor.load(_segmented_export(tmp_path))):
        tokens = p.preprocessor.tokenizer.tokenize(long_text)
        assert len(tokens) > 45
        windows = p.windows(long_text)
        assert len(windows) == -(-(len(tokens) - 20) // 10) + 1
        if p.tokenizer is None:  # raw text: spans of the cleaned text, from the first token to the last
            cleaned = clean_text(long_text)
            assert all(w in cleaned for w in windows)
            assert cleaned.startswith(windows[0]) and cleaned.endswith(windows[-1])
            assert p.preprocessor.tokenizer.tokenize(windows[0]) == tokens[:20]
        else:
            assert windows[0].split(" ") == tokens[:20] and windows[-1].split(" ") == tokens[-20:]
        expected = p.predict(windows, prepared=True).probabilities.mean(axis=0)
        got = p.predict([long_text, TEXTS[0]], long_text="window").probabilities
        np.testing.assert_allclose(got[0], expected, atol=1e-6)
        np.testing.assert_allclose(got[1], p.predict([TEXTS[0]]).probabilities[0], atol=1e-6)
        assert not np.allclose(got[0], p.predict([long_text]).probabilities[0])  # not just the beginning


def test_old_exports_serve_and_upgrade_to_raw_text(tmp_path: Path) -> None:
    """An export that takes segmented text still predicts (segmenting in Python); `publish --upgrade`
    writes a new version taking raw text with the same probabilities, and refuses a second upgrade."""
    from sentiment_tf import publish
    from tests.helpers import assert_user_error, cli

    old = _segmented_export(tmp_path)
    texts = [*TEXTS[:8], "房间太小了，再也不来了", "", "ＡＢＣ 好评！😀 http://x.cn"]
    before = Predictor.load(old)
    assert before.tokenizer is not None and "再也 不来" not in before.prepare(["再也不来了"])[0]
    expected = before.predict(texts).probabilities
    listed = tmp_path / "texts.txt"
    listed.write_text("\n".join(texts), encoding="utf-8")
    assert publish.main(["--upgrade", str(old.parent), "--texts", str(listed)]) == 0
    after = Predictor.load(old.parent)
    assert after.version_dir.name == "2" and after.tokenizer is None
    assert after.metadata["input_format"] == "raw" and after.metadata["temperature"] == 1.25
    np.testing.assert_allclose(after.predict(texts).probabilities, expected, atol=1e-5)
    assert_user_error(cli("publish", "--upgrade", str(old.parent), cwd=tmp_path), "takes raw text already")
    assert_user_error(cli("publish", "--upgrade", str(old.parent), "--run", "x", cwd=tmp_path), "give one of --run")
