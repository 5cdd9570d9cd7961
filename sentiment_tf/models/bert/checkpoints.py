"""Pretrained BERT checkpoints in every layout users bring: a Hub id or a directory, TF weights
(``tf_model.h5``) or PyTorch-layout ``model.safetensors`` and ``pytorch_model.bin`` (both read without
torch), checked before training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiment_tf.core.errors import UserError
from sentiment_tf.models.bert.preprocessor import WordPieceSettings
from sentiment_tf.models.bert.pytorch_bin import check_pytorch_bin

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


VOCAB_FILE = "vocab.txt"
HF_DIR = "hf_model"



def _weights_file(name_or_dir: str, filename: str) -> str | None:
    """Local path of ``filename`` in a checkpoint directory or Hub repo (downloaded once), else None."""
    from transformers.utils import cached_file

    try:
        return cached_file(name_or_dir, filename, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except OSError:
        return None


def _safetensors_format(path: str) -> str | None:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return (f.metadata() or {}).get("format")


WEIGHT_FILES = ("tf_model.h5", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Weights Hugging Face initialises afresh when a checkpoint lacks them (the pooler: run_mlm.py's
# BertForMaskedLM has none); everything else of the encoder must load.
FRESH_ALWAYS = ("bert.pooler.",)


def check_pretrained(name_or_dir: str) -> tuple[Any, Any]:
    """The checkpoint's config and tokenizer; a one-line error if it is not a usable BERT checkpoint.

    Called before a run directory is created, so a typo in ``--pretrained`` leaves nothing behind.
    """
    from transformers import AutoConfig, BertTokenizerFast

    local = Path(name_or_dir)
    if local.is_dir():
        missing = [what for what, ok in (
            ("config.json", (local / "config.json").is_file()),
            ("vocab.txt or tokenizer.json", (local / "vocab.txt").is_file() or (local / "tokenizer.json").is_file()),
            ("weights (" + ", ".join(WEIGHT_FILES) + ")", any((local / f).is_file() for f in WEIGHT_FILES))) if not ok]
        if missing:
            raise UserError(f"--pretrained {name_or_dir}: not a BERT checkpoint directory (no {'; no '.join(missing)}); "
                            "pass a Hub id such as bert-base-chinese or a directory saved by save_pretrained")
    try:
        config = AutoConfig.from_pretrained(name_or_dir)
        tokenizer = BertTokenizerFast.from_pretrained(name_or_dir)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise UserError(f"--pretrained {name_or_dir}: not a BERT checkpoint directory or reachable Hub id "
                        f"({str(err).splitlines()[0]})") from None
    WordPieceSettings.from_hf(tokenizer, source=f"--pretrained {name_or_dir}")
    if config.model_type != "bert":
        raise UserError(f"--pretrained {name_or_dir} is a {config.model_type!r} model; --model bert needs a "
                        "BERT checkpoint (e.g. bert-base-chinese)")
    for path in _pytorch_bin_files(name_or_dir):
        check_pytorch_bin(path)  # a pickle that would run code is refused now, before any run directory
    return config, tokenizer


def cleaning_lowercase(tokenizer: Any, requested: bool | None) -> bool:
    """Whether cleaning lower-cases text for this checkpoint: as its tokenizer does, unless the user chose."""
    uncased = WordPieceSettings.from_hf(tokenizer).lowercase
    if requested is None:
        if not uncased:
            log.info("the checkpoint is cased (do_lower_case: false): cleaning keeps case (--lowercase folds it)")
        return uncased
    if requested and not uncased:
        log.warning("--lowercase folds case before a cased checkpoint's tokenizer; its upper-case pieces go unused")
    return requested


def load_pretrained(name_or_dir: str, labels: list[str]) -> tuple[Any, Any]:
    """A ``TFBertForSequenceClassification`` with ``len(labels)`` outputs, and the checkpoint's tokenizer.

    A classification head that is absent or has another number of labels is initialised afresh;
    everything else must load (see :func:`load_weights` for the checkpoint formats accepted).
    """
    from transformers import TFBertForSequenceClassification

    config, tokenizer = check_pretrained(name_or_dir)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    return load_weights(TFBertForSequenceClassification, name_or_dir, config, fresh_prefixes=("classifier.",)), tokenizer


def load_weights(model_class: Any, name_or_dir: str, config: Any, fresh_prefixes: tuple[str, ...] = ()) -> Any:
    """``model_class`` (a Hugging Face TF BERT class) with the checkpoint's weights.

    Accepts TF weights (``tf_model.h5``, TF-format safetensors); PyTorch-layout safetensors or
    ``pytorch_model.bin``, single or sharded, from any BERT class (``bert.`` keys or a bare
    ``BertModel``), in float32/16 or bfloat16 — read as numpy arrays, because transformers 4.57's own
    TF loader fails on safetensors and needs torch for ``.bin`` (whose pickle it would also trust; ours
    builds tensors and dicts only, see :mod:`.pytorch_bin`). Weights under ``fresh_prefixes`` (task
    heads) and the pooler may be missing (initialised afresh, with a warning naming them).
    """
    if _weights_file(name_or_dir, "tf_model.h5"):
        return model_class.from_pretrained(name_or_dir, config=config, use_safetensors=False,
                                           ignore_mismatched_sizes=bool(fresh_prefixes))
    single = _weights_file(name_or_dir, "model.safetensors")
    if single and _safetensors_format(single) == "tf":
        return model_class.from_pretrained(name_or_dir, config=config, use_safetensors=True,
                                           ignore_mismatched_sizes=bool(fresh_prefixes))
    shards = [single] if single else _shards(name_or_dir, "model.safetensors.index.json")
    if shards:
        return _from_pytorch_state(model_class, config, _read_state(shards), fresh_prefixes, name_or_dir)
    shards = _pytorch_bin_files(name_or_dir)
    if shards:
        return _from_pytorch_state(model_class, config, _read_state(shards), fresh_prefixes, name_or_dir)
    raise UserError(f"{name_or_dir} holds no weights ({', '.join(WEIGHT_FILES)})")


def from_pytorch_state(model_class: Any, config: Any, paths: list[str], source: str) -> Any:
    """``model_class`` with the weights of PyTorch-layout files (safetensors or ``pytorch_model.bin``)."""
    return _from_pytorch_state(model_class, config, _read_state(paths), (), source)


def _pytorch_bin_files(name_or_dir: str) -> list[str]:
    """The ``torch.save`` weight files a checkpoint would be loaded from (none when it ships safer ones)."""
    if any(_weights_file(name_or_dir, f) for f in WEIGHT_FILES[:3]):
        return []
    single = _weights_file(name_or_dir, "pytorch_model.bin")
    return [single] if single else _shards(name_or_dir, "pytorch_model.bin.index.json")


def _shards(name_or_dir: str, index_name: str) -> list[str]:
    """The weight files a shard index (``model.safetensors.index.json`` or ``pytorch_model.bin.index.json``) names."""
    index = _weights_file(name_or_dir, index_name)
    if not index:
        return []
    try:
        files = sorted(set(json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise UserError(f"{index}: not a shard index ({err})") from None
    paths = [_weights_file(name_or_dir, f) for f in files]
    if None in paths:
        raise UserError(f"{index} names shard {files[paths.index(None)]}, which is not there")
    return paths


def _read_state(paths: list[str]) -> dict[str, np.ndarray]:
    """Every tensor of the shards (safetensors or ``torch.save`` files); float16/bfloat16/float64 weights
    become float32 (the TF model's dtype)."""
    from safetensors.numpy import load_file

    from sentiment_tf.models.bert.pytorch_bin import read_pytorch_bin

    state: dict[str, np.ndarray] = {}
    for path in paths:
        for k, v in (read_pytorch_bin(path) if path.endswith(".bin") else load_file(path)).items():
            if k.endswith("position_ids"):
                continue  # a buffer older transformers saved (arange), not a weight
            state[k] = v.astype(np.float32) if v.dtype.name in ("float16", "bfloat16", "float64") else v
    return state


def _from_pytorch_state(model_class: Any, config: Any, state: dict[str, np.ndarray], fresh_prefixes: tuple[str, ...],
                        source: str) -> Any:
    from transformers.modeling_tf_pytorch_utils import (
        load_pytorch_state_dict_in_tf2_model,
    )

    model = model_class(config)
    model(model.dummy_inputs, training=False)  # build the variables
    if not any(k.startswith("bert.") for k in state):  # a bare BertModel: its keys lack the prefix
        state = {k if k.startswith(fresh_prefixes or ("\0",)) else f"bert.{k}": v for k, v in state.items()}
    # A head for another label set cannot be reused: drop it and keep the fresh one.
    if "classifier.weight" in state and "classifier." in fresh_prefixes \
            and state["classifier.weight"].shape[0] != config.num_labels:
        for k in [k for k in state if k.startswith("classifier.")]:
            del state[k]
    _check_shapes(state, model, source, fresh_prefixes)
    model, info = load_pytorch_state_dict_in_tf2_model(model, state, tf_inputs=False, allow_missing_keys=True,
                                                       output_loading_info=True)
    fresh = fresh_prefixes + FRESH_ALWAYS
    missing = [k for k in info["missing_keys"] if not k.startswith(fresh)]
    if missing:
        raise UserError(f"{source}: weights missing for {', '.join(missing[:5])}; is it a BERT checkpoint?")
    if info["missing_keys"]:
        log.warning("%s: no weights for %s in the checkpoint; initialised afresh, as Hugging Face does", source,
                    ", ".join(info["missing_keys"]))
    log.info("loaded PyTorch-layout weights from %s without torch (%d tensors)", source, len(state))
    return model


def _check_shapes(state: dict[str, np.ndarray], model: Any, source: str, fresh_prefixes: tuple[str, ...]) -> None:
    """A one-line error naming the first checkpoint weight whose shape the model cannot take."""
    from transformers.modeling_tf_pytorch_utils import (
        convert_tf_weight_name_to_pt_weight_name,
    )

    for w in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape,
                                                                   start_prefix_to_remove=f"{model.name}/")
        if name not in state or name.startswith(fresh_prefixes or ("\0",)):
            continue
        want = tuple(w.shape)[::-1] if transpose.name == "SIMPLE" else tuple(w.shape)
        # Same element count is left to HF's loader, which reshapes such weights itself.
        if tuple(state[name].shape) != want and int(np.prod(state[name].shape)) != int(np.prod(want)):
            raise UserError(f"{source}: weight {name} has shape {tuple(state[name].shape)}, the model config "
                            f"needs {want}; is config.json the one these weights were saved with?")


