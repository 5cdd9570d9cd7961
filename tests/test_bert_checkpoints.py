"""Checkpoint layouts users bring, each built here in code from the tiny TF checkpoint (no network,
no torch): PyTorch-layout safetensors from every BERT class, sharded, half precision, a tokenizer
that ships only ``tokenizer.json``, and the ones that must be refused with one line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from sentiment_tf.core.errors import UserError
from tests.helpers import assert_user_error, cli, pytorch_state, write_torch_save

tf = pytest.importorskip("tensorflow")

TEXTS = ["这家酒店很干净", "质量太差了，不推荐", "ok"]


def _checkpoint(tf_dir: Path, out: Path, state: dict[str, np.ndarray], shards: int = 1,
                keep_vocab: bool = True, keep_tokenizer_json: bool = True) -> Path:
    from safetensors.numpy import save_file

    shutil.copytree(tf_dir, out, ignore=shutil.ignore_patterns("tf_model.h5"))
    if not keep_vocab:
        (out / "vocab.txt").unlink()
    if not keep_tokenizer_json:
        (out / "tokenizer.json").unlink()
    if shards == 1:
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(out / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in part})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def _logits(model, tokenizer, texts=TEXTS):
    enc = tokenizer(texts, padding=True, return_tensors="np")
    return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], training=False).logits.numpy()


def _encoder_values(model) -> dict[str, np.ndarray]:
    return {w.name.split("/", 1)[1]: w.numpy() for w in model.bert.weights if "/pooler/" not in w.name}


@pytest.fixture(scope="module")
def reference(tiny_bert):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    return load_pretrained(str(tiny_bert), ["a", "b"])


@pytest.fixture(scope="module")
def state(tiny_bert):
    return pytorch_state(tiny_bert)


def _mlm_heads(state: dict[str, np.ndarray], with_nsp: bool) -> dict[str, np.ndarray]:
    h = state["bert.embeddings.word_embeddings.weight"].shape[1]
    v = state["bert.embeddings.word_embeddings.weight"].shape[0]
    heads = {"cls.predictions.bias": np.zeros(v, np.float32),
             "cls.predictions.transform.dense.weight": np.eye(h, dtype=np.float32),
             "cls.predictions.transform.dense.bias": np.zeros(h, np.float32),
             "cls.predictions.transform.LayerNorm.weight": np.ones(h, np.float32),
             "cls.predictions.transform.LayerNorm.bias": np.zeros(h, np.float32)}
    if with_nsp:
        heads.update({"cls.seq_relationship.weight": np.zeros((2, h), np.float32),
                      "cls.seq_relationship.bias": np.zeros(2, np.float32)})
    return heads


def test_masked_lm_checkpoint_loads_with_fresh_pooler_and_head(tiny_bert, tmp_path, state, reference, caplog):
    """What run_mlm.py writes: `bert.` keys, no pooler, an MLM head; HF initialises pooler and head afresh."""
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    mlm = {k: v for k, v in state.items() if not k.startswith(("bert.pooler.", "classifier."))}
    ckpt = _checkpoint(tiny_bert, tmp_path / "mlm", {**mlm, **_mlm_heads(state, with_nsp=False)})
    with caplog.at_level(logging.WARNING, logger="sentiment_tf.models.bert.checkpoints"):
        model, _ = load_pretrained(str(ckpt), ["a", "b"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "sentiment_tf.models.bert.checkpoints"]
    assert len(warnings) == 1 and "bert.pooler.dense.weight" in warnings[0] and "classifier.weight" in warnings[0]
    want = _encoder_values(reference[0])
    for name, value in _encoder_values(model).items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_pretraining_checkpoint_loads(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    pre = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    ckpt = _checkpoint(tiny_bert, tmp_path / "pre", {**pre, **_mlm_heads(state, with_nsp=True)})
    model, _ = load_pretrained(str(ckpt), ["a", "b"])
    pooler = {w.name.split("/", 1)[1]: w.numpy() for w in model.bert.pooler.weights}
    for w in reference[0].bert.pooler.weights:
        np.testing.assert_array_equal(pooler[w.name.split("/", 1)[1]], w.numpy())


def test_base_model_checkpoint_without_prefix_loads(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    base = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    model, tok = load_pretrained(str(_checkpoint(tiny_bert, tmp_path / "base", base)), ["a", "b"])
    want = _encoder_values(reference[0])
    got = _encoder_values(model)
    assert got.keys() == want.keys()
    for name, value in got.items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_sharded_checkpoint_loads(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    model, tok = load_pretrained(str(_checkpoint(tiny_bert, tmp_path / "sharded", state, shards=3)), ["a", "b"])
    np.testing.assert_allclose(_logits(model, tok), _logits(*reference), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_checkpoint_loads_as_float32(tiny_bert, tmp_path, state, reference, dtype):
    import ml_dtypes

    from sentiment_tf.models.bert.checkpoints import load_pretrained

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    half = {k: v.astype(np_dtype) for k, v in state.items()}
    model, tok = load_pretrained(str(_checkpoint(tiny_bert, tmp_path / dtype, half)), ["a", "b"])
    assert all(w.dtype == tf.float32 for w in model.weights)
    emb = model.bert.embeddings.weights[0].numpy()
    np.testing.assert_array_equal(emb, half["bert.embeddings.word_embeddings.weight"].astype(np.float32))
    np.testing.assert_allclose(_logits(model, tok), _logits(*reference), atol=0.05)


def test_tokenizer_json_without_vocab_txt_loads(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.classifier import check_pretrained, load_pretrained

    ckpt = _checkpoint(tiny_bert, tmp_path / "fast_only", state, keep_vocab=False)
    assert not (ckpt / "vocab.txt").exists() and (ckpt / "tokenizer.json").exists()
    _, tok = check_pretrained(str(ckpt))
    assert tok.get_vocab() == reference[1].get_vocab()
    model, _ = load_pretrained(str(ckpt), ["a", "b"])
    np.testing.assert_allclose(_logits(model, tok), _logits(*reference), atol=1e-6)


def test_vocab_txt_without_tokenizer_json_loads(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.classifier import check_pretrained

    _, tok = check_pretrained(str(_checkpoint(tiny_bert, tmp_path / "slow_only", state, keep_tokenizer_json=False)))
    assert tok.get_vocab() == reference[1].get_vocab()


def test_wrong_shape_is_one_line_error_naming_it(tiny_bert, tmp_path, state):
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    bad = dict(state)
    bad["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((3, 5), np.float32)
    with pytest.raises(UserError, match=r"bert\.encoder\.layer\.1\.intermediate\.dense\.weight.*shape"):
        load_pretrained(str(_checkpoint(tiny_bert, tmp_path / "bad", bad)), ["a", "b"])


def test_missing_encoder_weight_is_an_error(tiny_bert, tmp_path, state):
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    bad = {k: v for k, v in state.items() if k != "bert.encoder.layer.0.attention.self.query.weight"}
    with pytest.raises(UserError, match=r"missing.*bert\.encoder\.layer\.0\.attention\.self\.query\.weight"):
        load_pretrained(str(_checkpoint(tiny_bert, tmp_path / "missing", bad)), ["a", "b"])


def _bin_checkpoint(tf_dir: Path, out: Path, state: dict[str, np.ndarray], shards: int = 1, **kw) -> Path:
    """A checkpoint as many on the Hub ship: config, tokenizer and only ``pytorch_model.bin`` (or shards)."""
    shutil.copytree(tf_dir, out, ignore=shutil.ignore_patterns("tf_model.h5"))
    if shards == 1:
        write_torch_save(state, out / "pytorch_model.bin", **kw)
        return out
    names, weight_map = sorted(state), {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        write_torch_save({k: state[k] for k in names[i::shards]}, out / file, **kw)
        weight_map.update({k: file for k in names[i::shards]})
    (out / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def test_pytorch_bin_checkpoints_load_without_torch(tiny_bert, tmp_path, state, reference):
    from sentiment_tf.models.bert.checkpoints import load_pretrained

    ref_model, tokenizer = reference
    bare = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith("classifier.")}  # a BertModel
    bare["embeddings.position_ids"] = np.arange(bare["embeddings.position_embeddings.weight"].shape[0])[None]
    for name, ckpt_state, shards in (("single", state, 1), ("sharded", state, 3), ("bare", bare, 1)):
        model, _ = load_pretrained(str(_bin_checkpoint(tiny_bert, tmp_path / name, ckpt_state, shards)), ["a", "b"])
        got, want = _encoder_values(model), _encoder_values(ref_model)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")
        if name != "bare":
            np.testing.assert_allclose(_logits(model, tokenizer), _logits(ref_model, tokenizer), atol=1e-5)
    model, _ = load_pretrained(str(_bin_checkpoint(tiny_bert, tmp_path / "bf16", state, bfloat16=True)), ["a", "b"])
    for k, v in _encoder_values(ref_model).items():  # bfloat16 keeps 8 bits of mantissa
        np.testing.assert_allclose(_encoder_values(model)[k], v, rtol=2 ** -7, atol=1e-30)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tiny_bert, tmp_path, tiny_csv):
    """A pytorch_model.bin whose pickle calls os.system: one line naming the call, exit 2, before any run
    directory, and the command never ran (torch.load without weights_only would have run it)."""
    import zipfile

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil"
    shutil.copytree(tiny_bert, ckpt, ignore=shutil.ignore_patterns("tf_model.h5"))
    command = f"touch {marker}".encode()
    evil = b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command + b"\x85R."
    with zipfile.ZipFile(ckpt / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", evil)
    proc = cli("train", "--model", "bert", "--pretrained", str(ckpt), "--data", str(tiny_csv), "--text-col", "review",
               "--label-col", "sentiment", "--output", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run"),
               cwd=tmp_path)
    assert_user_error(proc, "pytorch_model.bin", "os.system", "refused")
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()

    from sentiment_tf.models.bert.pytorch_bin import read_pytorch_bin

    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # a pickle stream: torch < 1.6's format
    with pytest.raises(UserError, match="before torch 1.6"):
        read_pytorch_bin(ckpt / "pytorch_model.bin")
    assert not marker.exists()


def test_inexpressible_tokenizer_is_refused(tiny_bert, tmp_path):
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.models.bert.classifier import check_pretrained

    ckpt = tmp_path / "nfc"
    shutil.copytree(tiny_bert, ckpt)
    spec = json.loads((ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, spec["normalizer"]]}
    (ckpt / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(UserError, match="cannot run inside the SavedModel.*normalizer 'Sequence'"):
        check_pretrained(str(ckpt))


@pytest.mark.parametrize("layout", ["sequence_classification", "masked_lm", "pretraining", "base_model",
                                    "sharded", "float16", "pytorch_bin"])
def test_encoder_equals_pytorch_for_every_layout(tiny_bert, tmp_path, layout):
    """Each layout saved by Hugging Face's PyTorch classes loads to the same encoder: hidden states
    equal PyTorch's within 1e-4 (and the logits too where the checkpoint has the head)."""
    torch = pytest.importorskip("torch", reason="torch not installed: PyTorch parity needs it (pip install torch)")
    import transformers
    from transformers import BertConfig, BertTokenizerFast

    from sentiment_tf.models.bert.checkpoints import load_pretrained

    torch.manual_seed(0)
    cfg = BertConfig.from_pretrained(str(tiny_bert), num_labels=2)
    cls = {"sequence_classification": "BertForSequenceClassification", "masked_lm": "BertForMaskedLM",
           "pretraining": "BertForPreTraining", "base_model": "BertModel"}.get(layout, "BertForSequenceClassification")
    pt = getattr(transformers, cls)(cfg).eval()
    out = tmp_path / layout
    kwargs = {"safe_serialization": layout != "pytorch_bin"}
    if layout == "sharded":
        kwargs["max_shard_size"] = "100KB"
    if layout == "float16":
        pt.half().save_pretrained(str(out), **kwargs)
        pt.float()  # compared in float32, with the weights rounded as the checkpoint holds them
    else:
        pt.save_pretrained(str(out), **kwargs)
    BertTokenizerFast.from_pretrained(str(tiny_bert)).save_pretrained(str(out))
    if layout == "sharded":
        assert (out / "model.safetensors.index.json").is_file()
    model, tok = load_pretrained(str(out), ["x", "y"])
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    encoder = pt if layout == "base_model" else pt.bert
    with torch.no_grad():
        want = encoder(**enc).last_hidden_state.numpy()
    got = model.bert(**{k: v.numpy() for k, v in enc.items()}, training=False).last_hidden_state.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    if cls == "BertForSequenceClassification":
        with torch.no_grad():
            np.testing.assert_allclose(_logits(model, tok), pt(**enc).logits.numpy(), atol=1e-4)
