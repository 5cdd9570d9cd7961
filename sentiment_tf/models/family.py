"""The model-family interface: what the commands need from a family, and the registry.

A family (``lstm``, ``bert``) is a module under ``sentiment_tf.models`` exposing ``FAMILY``, an
object with the :class:`Family` methods; what it trains and loads is a :class:`Trained`. The
registry imports a family's module only when it is asked for, so the Keras 3 (LSTM) and tf-keras
(BERT) flavours never meet in one import. Recipes (default epochs, batch size, learning rate,
patience) are plain data here, readable without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sentiment_tf.core.config import (
    AdaptConfig,
    DataConfig,
    ModelConfig,
    PretrainConfig,
    TokenizerConfig,
    TrainConfig,
)
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.splits import Splits
from sentiment_tf.evaluation import drift

if TYPE_CHECKING:
    import numpy as np

    from sentiment_tf.models.distillation import SoftTargets



class Trained(Protocol):
    """A trained classifier with what it needs to predict and export."""

    labels: list[str]
    history: dict[str, list[float]]
    temperature: float  # calibration: predictions are softmax(log p / T), in Python and in the export
    profile: dict | None  # the test split as the model saw it (sentiment_tf.evaluation.drift), stored in the export

    def predict_proba(self, texts: list[str]) -> "np.ndarray":
        """Probabilities ``[n, labels]`` for cleaned texts."""

    def tokens(self, texts: list[str]) -> "drift.Tokens":
        """The model's own tokens of cleaned texts and how many of them it does not know."""

    def export(self, base_dir: str | Path, config: dict, metrics: dict, check_texts: list[str],
               keep_failed: Path | None = None) -> Path:
        """A new verified export version under ``base_dir`` (see :func:`sentiment_tf.export.versions.write_version`)."""


class Family(Protocol):
    name: str

    def prepare(self, data_cfg: "DataConfig", tok_cfg: "TokenizerConfig", model_cfg: "ModelConfig",
                lowercase_given: bool) -> tuple["DataConfig", "TokenizerConfig", "ModelConfig"]:
        """Checks what the family needs before any data is read (e.g. the checkpoint) and returns the
        configs with what it implies (the cleaning; for a pretrained model its tokenizer and shapes),
        so the recorded configs say what really runs."""

    def fit(self, splits: "Splits", tok_cfg: "TokenizerConfig", model_cfg: "ModelConfig", train_cfg: "TrainConfig",
            run_dir: Path, lowercase: bool, seed: int, soft: "SoftTargets | None" = None) -> Trained:
        """Tokenizes the splits and trains a new model with ``model.fit`` (on a teacher's ``soft``
        targets too, where the family's recipe says ``student``)."""

    def load(self, version_dir: Path, metadata: dict) -> Trained:
        """The trainable model inside one of this family's exports."""

    def adapt(self, trained: Trained, splits: "Splits", adapt_cfg: "AdaptConfig", model_cfg: "ModelConfig",
              train_cfg: "TrainConfig", run_dir: Path, seed: int) -> Trained:
        """Continues training ``trained`` on domain ``splits`` (vocabulary growth, freezing: the family's)."""


class Pretrainer(Protocol):
    loss_name: str  # "masked-LM", "next-token"

    def check(self, cfg: "PretrainConfig") -> "PretrainConfig":
        """Refuses what cannot run (e.g. the --from checkpoint) before anything is written; returns
        ``cfg`` with the family's defaults filled in."""

    def run(self, cfg: "PretrainConfig", train_texts: list[str], held_out: list[str], run_dir: Path,
            out_dir: Path) -> dict:
        """Pretrains on ``train_texts``, writes the checkpoint into ``out_dir`` and returns its summary
        (held-out loss before and after, history, sizes)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Default optimisation settings of a family, for training from scratch and for adapting."""

    train: dict[str, Any]
    finetune: dict[str, Any]
    replay: int = 0  # finetune's default --replay, when the source model's training data is found
    student: bool = False  # can learn from a teacher's soft targets (the distill command)
    hugging_face: bool = False  # its trained model has a transformers form (publish --hf: save_pretrained)


# Adaptation starts from a trained model: BERT with smaller steps than training (the original paper's
# recipe), so the domain signal refines the model instead of overwriting it.
REGISTRY: dict[str, tuple[str, str, Recipe]] = {  # name: (classifier module, pretraining module, recipe)
    "lstm": ("sentiment_tf.models.lstm.classifier", "sentiment_tf.models.lstm.language_model", Recipe(
        train={"epochs": 8, "batch_size": 64, "learning_rate": 1.5e-3, "patience": 2},
        # LSTM adaptation at a third of training's rate: on held-out domains (手机, 衣服; bench/README.md)
        # 5e-4 beat 1e-3 and 2e-3 with less forgetting.
        finetune={"epochs": 10, "batch_size": 32, "learning_rate": 5e-4, "patience": 3},
        # Replaying 1,000 source examples removed the forgetting on those domains at no cost.
        replay=1000, student=True)),
    "bert": ("sentiment_tf.models.bert.classifier", "sentiment_tf.models.bert.pretraining", Recipe(
        train={"epochs": 3, "batch_size": 32, "learning_rate": 5e-5, "patience": 2},
        finetune={"epochs": 4, "batch_size": 16, "learning_rate": 2e-5, "patience": 3}, hugging_face=True)),
}


def names() -> list[str]:
    return list(REGISTRY)


def recipe(name: str) -> Recipe:
    return REGISTRY[_known(name)][2]


def train_config(cfg: "TrainConfig", name: str, purpose: str = "train", output: str | None = None) -> "TrainConfig":
    """``cfg`` with the options left unset taken from family ``name``'s recipe for ``purpose`` ('train' or
    'finetune'); the export goes to ``output`` (default saved_models/<name>) unless ``--output`` says."""
    return cfg.resolved_for(getattr(recipe(name), purpose), output or f"saved_models/{name}")


def get(name: str) -> Family:
    """The family called ``name``, its module (and Keras flavour) imported now."""
    return importlib.import_module(REGISTRY[_known(name)][0]).FAMILY


def pretrainer(name: str) -> Pretrainer:
    """How family ``name`` pretrains a language model on unlabelled text (``pretrain --model``), its
    module (and Keras flavour) imported now."""
    return importlib.import_module(REGISTRY[_known(name)][1]).PRETRAINER


def _known(name: str) -> str:
    if name not in REGISTRY:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(REGISTRY)}")
    return name


def load_trained(version_dir: Path, metadata: dict[str, Any]) -> Trained:
    """The trainable model inside an export, loaded by the family that wrote it."""
    return get(str(metadata.get("family"))).load(version_dir, metadata)
