"""MODEL_CARD.md for every export: what the model is for, what it was trained on, how well it does and
where it stops working — the Hugging Face model-card sections that apply (model details, intended
use, training data, preprocessing, training procedure, evaluation, limitations, reproduction),
rendered from what the export records, so the card can never disagree with the model.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from typing import Any

CARD_FILE = "MODEL_CARD.md"  # in assets.extra/ and in the run directory


def package_versions() -> dict[str, str]:
    """The versions that decide how this model reads text and computes (those installed)."""
    found = {}
    for name in ("tensorflow", "keras", "tf-keras", "transformers", "tensorflow-text", "jieba", "scikit-learn"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "—"


@dataclasses.dataclass(frozen=True)
class FamilyCard:
    """What a model family says of its own models in the card; written by the family at export time."""

    architecture: str
    initialisation: str
    tokenizer: str  # the preprocessing bullet: tokenizer, vocabulary, length limit
    length_limit: str  # e.g. "200 jieba tokens"
    empty_text: str  # what an empty text (or one with nothing the tokenizer keeps) becomes
    token_unit: str  # "jieba tokens", "word pieces"
    train_options: tuple[str, ...] = ()  # TrainConfig options that apply to this family only


COMMON_TRAIN_OPTIONS = ("epochs", "batch_size", "learning_rate", "patience", "class_weight")


@dataclasses.dataclass
class _Card:
    """What the sections read: the export's metadata and the run's config sections."""

    metadata: dict[str, Any]
    config: dict[str, Any]
    about: FamilyCard

    def __post_init__(self) -> None:
        self.metrics = self.metadata.get("metrics") or {}
        self.family = self.metadata.get("family", "?")
        self.labels = list(self.metadata.get("labels", []))
        self.model_cfg, self.tok_cfg = self.config.get("ModelConfig", {}), self.config.get("TokenizerConfig", {})
        self.train_cfg, self.data_cfg = self.config.get("TrainConfig", {}), self.config.get("DataConfig", {})
        self.adapt_cfg = self.config.get("AdaptConfig")


def _details(c: _Card) -> list[str]:
    out = ["## Model details", ""]
    out += [f"- Architecture: {c.about.architecture}.", f"- Initialisation: {c.about.initialisation}."]
    if c.metrics.get("finetuned_from"):
        out.append(f"- Adapted with `finetune` from `{c.metrics['finetuned_from']}`.")
    teacher = c.metrics.get("distillation")
    if teacher:
        out.append(f"- Distilled with `distill` from the {teacher.get('family')} export `{teacher.get('path')}`: the "
                   f"teacher has {_pct(teacher.get('test_accuracy'))} accuracy on this model's test split, and this "
                   f"model agrees with it on {_pct(teacher.get('student_agreement'))} of those texts (temperature "
                   f"{teacher.get('temperature')}, soft-target weight {teacher.get('alpha')}; transfer set "
                   f"{teacher.get('transfer_labelled')} labelled + {teacher.get('transfer_unlabelled')} unlabelled + "
                   f"{teacher.get('transfer_augmented', 0)} augmented texts).")
    out += [f"- Labels ({len(c.labels)}): {', '.join(f'`{name}`' for name in c.labels)}.",
            f"- Calibration temperature (in the graph): {c.metadata.get('temperature', 1.0):.4g}.",
            f"- Exported {c.metadata.get('created', '?')} by sentiment_tf {c.metadata.get('sentiment_tf_version', '?')}.", ""]
    return out


def _intended_use(c: _Card) -> list[str]:
    out = ["## Intended use", "",
            "Sentiment classification of Chinese text (reviews and comments like the training data) into the labels "
            "above, served from the SavedModel (`serving_default`, TF Serving or `python -m sentiment_tf.serve`). "
            "Probabilities are calibrated on the validation split of the training domain; route low-confidence "
            "texts to a person rather than trusting them. Not meant for other languages, for texts far from the "
            "training domain (measure with a labelled sample first), or for decisions about individuals.", ""]

    return out


def _training_data(c: _Card) -> list[str]:
    stats = c.metrics.get("data") or {}
    out = ["## Training data", ""]
    files = [(name, c.data_cfg.get(name)) for name in ("data", "val_data", "test_data") if c.data_cfg.get(name)]
    out += [f"- {name}: `{path}`" for name, path in files]
    rows = [[key.replace("_file", ""), s.get("rows_read"), s.get("duplicates"), s.get("conflicting_texts"),
             s.get("empty_text"), s.get("missing_label"), s.get("rows_kept")]
            for key, s in stats.items() if key.endswith("_file") and isinstance(s, dict)]
    if rows:
        out += ["", _table(["file", "rows read", "duplicates dropped", "conflicting texts dropped", "empty",
                            "no label", "kept"], rows)]
    if stats.get("overlap_removed"):
        out += ["", "Texts removed so no evaluation text is trained on: " +
                ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats["overlap_removed"].items()) + "."]
    if stats.get("split_sizes"):
        sizes = stats["split_sizes"]
        out += ["", f"Split after cleaning and de-duplication: {sizes.get('train')} train / {sizes.get('val')} "
                    f"validation / {sizes.get('test')} test."]
    if stats.get("label_counts"):
        out += [f"Training labels: {', '.join(f'{k} {v}' for k, v in stats['label_counts'].items())}."]
    if c.data_cfg.get("domain_col"):
        out += [f"Domains: column `{c.data_cfg['domain_col']}` (per-domain results below)."]
    out.append("")
    return out


def _preprocessing(c: _Card) -> list[str]:
    out = ["## Preprocessing", ""]
    cleaning = c.metadata.get("cleaning", {})
    lower = cleaning.get("lowercase", c.data_cfg.get("lowercase"))
    out.append(f"- Cleaning: HTML entities decoded, full-width forms folded (NFKC), whitespace collapsed; Latin "
               f"letters {'lower-cased' if lower else 'kept as written'}.")
    out.append(f"- Tokenizer: {c.about.tokenizer}.")
    out.append("")
    return out


def _procedure(c: _Card) -> list[str]:
    out = ["## Training procedure", ""]
    keys = COMMON_TRAIN_OPTIONS + c.about.train_options
    out.append("- " + ", ".join(f"{k} {c.train_cfg[k]}" for k in keys if k in c.train_cfg) +
               f"; seed {c.data_cfg.get('seed')}; early stopping on validation loss, best epoch restored.")
    if c.adapt_cfg:
        out.append("- Adaptation: " + ", ".join(f"{k} {c.adapt_cfg[k]}" for k in ("freeze", "grow_vocab", "replay", "min_freq")
                                                if k in c.adapt_cfg) + ".")
    out.append("")
    return out


def _evaluation(c: _Card) -> list[str]:
    out = ["## Evaluation (held-out test split)", "",
            f"Accuracy {_pct(c.metrics.get('test_accuracy'))}, weighted F1 {_pct(c.metrics.get('test_weighted_f1'))} on "
            f"{c.metrics.get('test_size', '?')} texts."]
    if c.metrics.get("original_test_accuracy") is not None:
        out.append(f"Source model's own test split after adaptation (forgetting): {_pct(c.metrics['original_test_accuracy'])}.")
    per_label = c.metrics.get("per_label") or {}
    if per_label:
        out += ["", _table(["label", "precision", "recall", "F1", "support"],
                           [[name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1-score']:.4f}", int(v["support"])]
                            for name, v in per_label.items()])]
    if c.metrics.get("by_domain"):
        out += ["", _table(["domain", "accuracy", "weighted F1", "support"],
                           [[d, f"{v['accuracy']:.4f}", f"{v['weighted_f1']:.4f}", v["support"]]
                            for d, v in c.metrics["by_domain"].items()])]
    cal = c.metrics.get("calibration")
    if cal:
        split = "test" if "test" in cal["after"] else "validation"
        b, a = cal["before"][split], cal["after"][split]
        out += ["", f"Calibration ({split}; temperature {cal['temperature']:.4g} fitted on validation): ECE "
                    f"{b['ece']:.4f} → {a['ece']:.4f}, Brier {b['brier']:.4f} → {a['brier']:.4f}, NLL {b['nll']:.4f} → "
                    f"{a['nll']:.4f}."]
    else:
        out += ["", "Calibration: none (`--no-calibration`); probabilities are the network's own."]
    out.append("")

    return out


def _limitations(c: _Card) -> list[str]:
    out = ["## Limitations", "",
            f"- Texts longer than {c.about.length_limit} are cut to their beginning; the rest is not read.",
            f"- An empty text, or one with nothing the tokenizer keeps (e.g. emoji only), {c.about.empty_text}: the prediction "
            "is the model's prior for such input, not a judgement of the text.",
            "- Accuracy holds for texts like the training data; another domain usually scores lower (adapt with "
            "`python -m sentiment_tf.finetune`). Labels in review corpora are noisy (review-level labels on single "
            "sentences, sarcasm), so test figures carry that noise too.",
            "- Calibration was fitted on the training domain's validation split; on shifted data confidence is "
            "again optimistic.", ""]
    return out


def _monitoring(c: _Card) -> list[str]:
    profile = c.metadata.get("profile")
    if not profile:
        return []
    length = profile["length"]["quantiles"]
    return ["## Monitoring", "",
            f"Input profile of the test split ({profile['texts']} texts), which `python -m sentiment_tf.monitor` compares "
            "new data with:", "",
            f"- OOV rate {profile['oov_rate']:.2%}; length median {length[50]:.0f}, p90 {length[90]:.0f} {c.about.token_unit}; "
            f"nothing to classify {profile['nothing_share']:.2%}",
            "- predicted labels: " + ", ".join(f"{k} {v:.1%}" for k, v in profile["labels"].items()),
            f"- top tokens: {' '.join(t for t, _ in profile['top_tokens'][:15])}", ""]


def _versions(c: _Card) -> list[str]:
    out = ["## Software versions", "", ", ".join(f"{k} {v}" for k, v in {**package_versions(),
                                                                         **c.metadata.get("versions", {})}.items()), ""]
    return out


def _reproduce(c: _Card) -> list[str]:
    out = ["## How to reproduce", "", "The run's full configuration is `assets.extra/config.json` beside this card.", "",
            "```bash"]
    if c.adapt_cfg:
        flags = [f"--from {c.metrics.get('finetuned_from', 'SOURCE')}"] + [
            f"--{name.replace('_', '-')} {c.data_cfg[name]}" for name in ("data", "val_data", "test_data", "text_col",
                                                                        "label_col", "seed") if c.data_cfg.get(name)]
        out.append(f"python -m sentiment_tf.finetune {' '.join(flags)} --output NEW_DIR   # + AdaptConfig/TrainConfig "
                   "options in config.json")
    else:
        out.append("python -m sentiment_tf.train --config assets.extra/config.json --output NEW_DIR --run-dir NEW_RUN")
    out += ["```", ""]
    return out


SECTIONS = (_details, _intended_use, _training_data, _preprocessing, _procedure, _evaluation, _limitations, _monitoring,
            _versions, _reproduce)


def render(metadata: dict[str, Any], config: dict[str, Any], about: FamilyCard) -> str:
    """The card for an export's ``metadata`` (``sentiment_tf.json``), run ``config`` and what its family
    says of it (``about``)."""
    c = _Card(metadata, config, about)
    out = [f"# Model card: sentiment_tf {c.family} sentiment classifier", ""]
    for section in SECTIONS:
        out += section(c)
    return "\n".join(out)


def render_bytes(metadata: dict[str, Any], config_bytes: bytes | None, about: FamilyCard) -> bytes:
    config = json.loads(config_bytes.decode("utf-8")) if config_bytes else {}
    return render(metadata, config, about).encode("utf-8")
