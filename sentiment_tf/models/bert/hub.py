"""A fine-tuned BERT export as a Hugging Face ``save_pretrained`` directory: PyTorch-layout
``model.safetensors`` (``BertForSequenceClassification``'s names, written without torch), ``config.json``
with ``id2label``/``label2id``, the tokenizer files, and the model card as ``README.md`` with Hub
metadata — what ``BertForSequenceClassification.from_pretrained``, the Hub and a colleague's PyTorch
code read. transformers 4.55+ cannot load PyTorch safetensors into its TF classes
(huggingface/transformers#40028), so ``tf_weights`` adds ``tf_model.h5`` for
``TFBertForSequenceClassification.from_pretrained(dir, use_safetensors=False)``, as Hub repos that
serve both frameworks do.

The directory is written beside its destination, each weight file read back into a fresh model and
its logits compared with the export's model before the directory is renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sentiment_tf.core import atomic
from sentiment_tf.core.errors import UserError
from sentiment_tf.export.versions import META_DIR

CHECK_TEXTS = ["这家酒店很干净，服务也好", "物流太慢了，再也不买", "一般般吧", "质量不错，价格也合适，推荐购买",
               "内容很精彩，值得一读", "ＡＢＣ 好评！😀", "房间很小，隔音很差，早餐倒是不错"]
TOLERANCE = 1e-4  # float32 logits of the same weights through two graphs


def pytorch_state(model) -> dict[str, np.ndarray]:
    """``model``'s weights under PyTorch's names and layout (kernels transposed)."""
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    state = {}
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(weight.name, tf_weight_shape=weight.shape)
        value = weight.numpy()
        state[name] = np.ascontiguousarray(value.T if transpose.name == "SIMPLE" else value, dtype=np.float32)
    return state


def card(version_dir: Path, metadata: dict) -> str:
    """The export's model card with the Hub's YAML metadata on top."""
    # The Hub's card metadata; the accuracy is in the card's body (a model-index entry would need the dataset).
    lines = ["---", "language: zh", "library_name: transformers", "pipeline_tag: text-classification",
             "tags:", "- sentiment-analysis", "- sentiment_tf", "---", ""]
    body = (version_dir / META_DIR / "MODEL_CARD.md")
    temperature = float(metadata.get("temperature", 1.0))
    note = (f"> Exported from sentiment_tf's `{version_dir.parent.name}` version {version_dir.name}. Its calibrated "
            f"probabilities are `softmax(logits / {temperature:.4g})` (the temperature is in the SavedModel's graph, "
            "not in these weights).\n\n")
    return "\n".join(lines) + note + (body.read_text(encoding="utf-8") if body.is_file() else "")


def save_pretrained(trained, version_dir: Path, metadata: dict, out: Path, tf_weights: bool = False) -> Path:
    """Writes ``out`` (new or empty) as a ``save_pretrained`` directory of ``trained`` (a TrainedBert)."""
    from safetensors.numpy import save_file
    from transformers import TFBertForSequenceClassification

    from sentiment_tf.models.bert import checkpoints

    out = Path(out)
    atomic.check_new_directory(out, "--output")
    labels = list(metadata["labels"])
    config = trained.model.config
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.architectures = ["BertForSequenceClassification"]
    with atomic.temp_dir_beside(out.parent, f".{out.name}.tmp-") as tmp:
        if tf_weights:
            trained.model.save_pretrained(str(tmp), safe_serialization=False)  # tf_model.h5
        save_file(pytorch_state(trained.model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(str(tmp))
        trained.preprocessor.tokenizer.save_pretrained(str(tmp))
        atomic.write_text(tmp / "README.md", card(version_dir, metadata))
        for path in tmp.rglob("*"):
            os.chmod(path, atomic.dir_mode() if path.is_dir() else atomic.file_mode())
        # Each weight file read back: the same logits as the export's model, or nothing is published.
        reloaded = {"model.safetensors": checkpoints.from_pytorch_state(
            TFBertForSequenceClassification, config, [str(tmp / "model.safetensors")], str(tmp))}
        if tf_weights:
            reloaded["tf_model.h5"] = TFBertForSequenceClassification.from_pretrained(str(tmp), use_safetensors=False)
        batch = dict(trained.preprocessor.tokenizer(CHECK_TEXTS, padding=True, return_tensors="tf"))
        ours = trained.model(batch, training=False).logits.numpy()
        for name, model in reloaded.items():
            gap = float(np.abs(ours - model(batch, training=False).logits.numpy()).max())
            if gap > TOLERANCE:
                raise UserError(f"--hf: {name} read back gives logits {gap:.2g} away from the export's model "
                                f"(> {TOLERANCE:g}); nothing was written")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    return out
