"""Typed configuration: one dataclass per concern, turned into a CLI and saved with every run.

Each field's ``metadata["help"]`` becomes its ``--help`` text; ``--config FILE`` (JSON or YAML)
sets defaults that explicit command-line options override. ``resolved`` configs are written next
to every run and export so a result can always be traced back to the settings that produced it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from sentiment_tf.core.errors import UserError

DEFAULT_DATA = "data/reviews.csv"


def option(text: str, flags: tuple[str, ...] = (), metavar: str | None = None, at_least: float | None = None,
          above: float | None = None, below: float | None = None, at_most: float | None = None,
          positional: str | None = None, **kw: Any) -> Any:
    """A dataclass field with its ``--help`` text, extra option spellings, metavar and allowed range
    (checked by :func:`build_configs` for flags and config files alike, before any work).
    ``positional``: an argument without a flag, with this argparse ``nargs`` ('*', '+', '?', or 'one')."""
    bounds = {"at_least": at_least, "above": above, "below": below, "at_most": at_most}
    return dataclasses.field(metadata={"help": text, "flags": flags, "metavar": metavar, "positional": positional,
                                       "bounds": {k: v for k, v in bounds.items() if v is not None}}, **kw)


def require(cfg: Any, *names: str) -> None:
    """Refuses a config whose required string options (empty by default) were not given."""
    for name in names:
        if not getattr(cfg, name):
            raise UserError(f"--{name.replace('_', '-')} is required")


@dataclasses.dataclass
class DataConfig:
    """Where the data comes from and how it is cleaned and split."""

    data: str = option(f"Training data: CSV, TSV, JSON lines or Excel (default: bundled {DEFAULT_DATA}).",
                       default=DEFAULT_DATA)
    text_col: str = option("Column holding the text.", default="text")
    label_col: str = option("Column holding the label (string or integer).", default="label")
    domain_col: str | None = option("Optional column naming each text's domain (e.g. hotel, books): reports then "
                                    "add a per-domain breakdown.", default=None)
    val_data: str | None = option("Optional validation file (same columns); otherwise split from --data.",
                                  default=None)
    test_data: str | None = option("Optional test file (same columns); otherwise split from --data.",
                                   default=None)
    val_size: float = option("Validation fraction when splitting --data.", default=0.1)
    test_size: float = option("Test fraction when splitting --data.", default=0.1)
    lowercase: bool = option("Lower-case Latin letters during cleaning (for --model bert, the default follows "
                             "the checkpoint's do_lower_case).", default=True)
    seed: int = option("Seed for the split, shuffling and weight initialisation.", default=42)

    def resolved(self) -> "DataConfig":
        """Data paths made absolute (where they exist), so a saved config still finds its files from
        another directory — `finetune` re-creates a model's test split from it."""
        paths = {name: str(Path(getattr(self, name)).resolve()) for name in ("data", "val_data", "test_data")
                 if getattr(self, name) and Path(getattr(self, name)).is_file()}
        return dataclasses.replace(self, **paths)

    def __post_init__(self) -> None:
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise UserError(f"--{name.replace('_', '-')} must be between 0 and 0.5, got {value}")


@dataclasses.dataclass
class TokenizerConfig:
    """How text becomes tokens (recorded in every export and checked on load)."""

    tokenizer: Literal["word", "char"] = option(
        "'word': jieba precise mode; 'char': one token per CJK character, Latin/digit runs kept whole.",
        default="word")
    hmm: bool = option("jieba HMM for words missing from the dictionary.", default=True)
    user_dict: str | None = option("jieba user dictionary (one 'word [freq] [tag]' per line).", default=None)
    stopwords: str | None = option("File of stopwords to drop, one per line.", default=None)
    max_tokens: int = option("Keep the first N tokens of each text.", at_least=1, default=200)
    min_freq: int = option("Drop tokens seen fewer times than this in the training split.", at_least=1, default=2)
    max_vocab: int = option("Keep at most this many tokens (most frequent first).", at_least=2, default=50000)


@dataclasses.dataclass
class ModelConfig:
    """Network architecture."""

    model: Literal["lstm", "bert"] = option(
        "Model family: 'lstm' (jieba words; from scratch or from a --pretrained language model) or 'bert' "
        "(fine-tunes --pretrained).", default="lstm")
    pretrained: str | None = option(
        "BERT: Hugging Face Hub id or local checkpoint directory to fine-tune (TF weights, or PyTorch-layout "
        "model.safetensors; torch not needed) [bert-base-chinese when not given]. LSTM: a language model "
        "directory from `pretrain --model lstm` whose embedding, encoder and tokenizer the classifier starts "
        "from [none: random initialisation].", default=None)
    max_length: int = option("BERT only: maximum word pieces per text, [CLS] and [SEP] included.", at_least=3, default=128)
    # head+tail: better than head on ChnSentiCorp dev at --max-length 64 and 128 (bench/README.md)
    truncation: Literal["head", "tail", "head+tail"] = option(
        "BERT only: which word pieces of a longer text are kept, in training and in the exported graph: the "
        "beginning, the end, or a quarter of them from the beginning and the rest from the end (Sun et al. 2019).",
        default="head+tail")
    rnn: Literal["lstm", "gru"] = option("Recurrent cell.", default="lstm")
    bidirectional: bool = option("Run the RNN both ways.", default=True)
    embedding_dim: int = option("Embedding size.", at_least=1, default=128)
    # The LSTM defaults (units, pooling, dropout, learning rate) come from `tune` on ChnSentiCorp's dev split.
    rnn_units: int = option("RNN units per direction.", at_least=1, default=128)
    pooling: Literal["max", "last"] | None = option(
        "'last': each direction's final state; 'max': max over all time steps of the RNN outputs (faster "
        "to train here). Default: last from scratch, max from a --pretrained language model.", default=None)
    dropout: float = option("Dropout before the output layer (and on embeddings).", at_least=0, below=1, default=0.4)

    def __post_init__(self) -> None:
        if self.pooling is None:  # a language model's states at every step carry the text, not just the last
            self.pooling = "max" if self.pretrained else "last"


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, callbacks and outputs."""

    epochs: int | None = option("Maximum epochs (early stopping usually ends sooner); default: train 8 for lstm, "
                                "3 for bert; finetune 10 and 4.", at_least=1, default=None)
    batch_size: int | None = option("Batch size; default: train 64 for lstm, 32 for bert; finetune 32 and 16.",
                                    at_least=1, default=None)
    learning_rate: float | None = option("Peak learning rate; default: train 1.5e-3 (Adam) for lstm, 5e-5 (AdamW with "
                                         "linear warmup and decay) for bert; finetune 5e-4 and 2e-5.", above=0,
                                         default=None)
    # ULMFiT's schedule is off by default: from our LMs both parts trailed plain fine-tuning on dev (bench/README.md).
    unfreeze: Literal["gradual", "all"] = option(
        "LSTM only: 'gradual' trains the output layer alone in the first epoch, adds the recurrent layer in the "
        "second and the embedding from the third (ULMFiT); 'all' trains every layer from the start.", default="all")
    lr_decay: float = option(
        "LSTM only: discriminative learning rates; each layer below the output layer learns at the rate of the "
        "one above divided by this (ULMFiT: 2.6; 1 = one rate).", at_least=1, default=1.0)
    errors: int = option("Explain this many of the most confidently wrong test texts in the run's errors.html "
                         "(integrated gradients; 0: none).", at_least=0, default=20)
    calibration: bool = option("Fit a temperature on the validation split after training, so probabilities "
                               "mean what they say (applied in the export's graph; labels unchanged).", default=True)
    weight_decay: float = option("BERT only: AdamW weight decay (not on biases and LayerNorm).", at_least=0, default=0.01)
    warmup_ratio: float = option("BERT only: fraction of training steps with linear learning-rate warmup.",
                                 at_least=0, below=1, default=0.1)
    patience: int | None = option("Early-stopping patience in epochs (on validation loss); default 2 (train), "
                                  "3 (finetune).", at_least=0, default=None)
    class_weight: Literal["none", "balanced"] = option(
        "'balanced' weights classes inversely to their frequency.", default="none")
    bucketing: bool = option("Batch texts of similar length together (little padding, much faster; accuracy "
                             "the same within noise) instead of shuffled batches padded to their longest text.",
                             default=True)
    mixed_precision: bool = option("float16 compute on GPU (ignored on CPU).", default=False)
    xla: bool = option("BERT only: compile the training step with XLA on GPU (ignored on CPU).", default=True)
    output: str | None = option("Export base directory (TF Serving layout: OUTPUT/<version>/); default "
                                "saved_models/<model> (train), <source base>-finetuned (finetune).", default=None)
    allow_other_data: bool = option("Add the export to --output even when its newest version was trained on "
                                    "another data file or label set (otherwise refused: it would silently "
                                    "become the version predict and serve use).", default=False)
    run_dir: str | None = option("Directory for reports, checkpoints and logs (default: runs/<model>-<time>).",
                                 default=None)
    resume: str | None = option("Resume an interrupted run from its run directory.", default=None)
    verbose: bool = option("Debug logging.", default=False)

    def resolved_for(self, recipe: dict[str, Any], output: str) -> "TrainConfig":
        """Fills the options left unset from a family's ``recipe`` (``models.family.train_config``), so a
        saved config holds concrete values; ``output`` is the default export directory."""
        values = {name: getattr(self, name) if getattr(self, name) is not None else default
                  for name, default in recipe.items()}
        values["output"] = self.output or output
        return dataclasses.replace(self, **values)


@dataclasses.dataclass
class AdaptConfig:
    """What to adapt, how, and how to evaluate it (finetune; optimisation comes from TrainConfig)."""

    from_model: str = option("Export to adapt: a version directory or base directory written by `train`.",
                             flags=("--from",), default="")
    freeze: Literal["none", "embeddings", "encoder"] = option(
        "Keep these layers at their source values: 'embeddings' (LSTM: the embedding table, so no vocabulary "
        "growth; BERT: the embedding layer), 'encoder' (everything but the output layer).", default="none")
    freeze_layers: int = option("BERT only: also freeze the embeddings and the first N encoder layers.", at_least=0,
                                default=0)
    grow_vocab: bool = option("LSTM only: add domain words missing from the vocabulary as new embedding rows "
                              "(trained rows keep their values).", default=True)
    user_dict: str | None = option("LSTM only: a jieba user dictionary of domain terms (added to the source "
                                   "model's own; recorded in the export).", default=None)
    min_freq: int = option("LSTM only: a domain word joins the vocabulary once seen this often in the domain "
                           "training split.", at_least=1, default=2)
    replay: int | None = option("Mix this many examples of the source model's original training split into the "
                                "domain training data, to limit forgetting (0 = none); default: lstm 1000 when "
                                "that data is found (else 0, with a warning), bert 0.", at_least=0, default=None)
    unlabelled: str | None = option("Unlabelled domain texts (one per line, or a table with --text-col): after "
                                    "adapting, confident predictions on them become extra training labels and the "
                                    "model is adapted again from the source (self-training).", default=None)
    pseudo_threshold: float = option("Self-training keeps predictions at least this confident.", at_least=0,
                                     at_most=1, default=0.9)
    teacher: str | None = option("LSTM only: distil from this export (e.g. a BERT fine-tuned on the same domain "
                                 "labels) while adapting: it scores the domain training texts, replayed texts and "
                                 "--unlabelled texts (the transfer set, instead of self-training) and the student "
                                 "learns its soft targets.", default=None)
    temperature: float = option("With --teacher: the distillation temperature.", above=0, default=2.0)
    alpha: float = option("With --teacher: the weight of the soft targets for a labelled text (the label gets "
                          "1 - alpha).", at_least=0, at_most=1, default=0.5)
    original_data: str | None = option("The source model's training data file, if it moved since training "
                                       "(its split is re-created from the recorded seed and sizes).", default=None)
    learning_curve: str | None = option("Comma-separated numbers of domain training labels, e.g. 0,100,250,500,1000: "
                                        "adapt on each and plot domain accuracy vs a TF-IDF baseline.", default=None)
    cv: int = option("K-fold cross-validation on the domain data (K ≥ 2): mean ± std accuracy and weighted F1.",
                     at_least=0, default=0)
    seeds: int = option("Repeat the adaptation with this many seeds and report mean ± std.", at_least=1, default=1)

    def __post_init__(self) -> None:
        if not self.from_model:
            raise UserError("--from: give the export to adapt (e.g. saved_models/lstm)")
        if self.cv == 1:
            raise UserError("--cv needs at least 2 folds (0 turns cross-validation off)")
        if sum(bool(x) for x in (self.learning_curve, self.cv, self.seeds > 1)) > 1:
            raise UserError("--learning-curve, --cv and --seeds are separate evaluations; pick one per run")
        if self.unlabelled and not Path(self.unlabelled).is_file():  # now, not after the first adaptation
            raise UserError(f"--unlabelled {self.unlabelled}: file not found")
        if self.teacher and (self.learning_curve or self.cv or self.seeds > 1):
            raise UserError("--teacher adapts and exports one model; leave out --learning-curve, --cv and --seeds")
        self.curve_sizes()  # validates

    def curve_sizes(self) -> list[int]:
        if not self.learning_curve:
            return []
        try:
            sizes = sorted({int(x) for x in self.learning_curve.split(",") if x.strip()})
        except ValueError:
            raise UserError(f"--learning-curve {self.learning_curve!r}: give comma-separated label counts, "
                            "e.g. 0,100,250,500") from None
        if not sizes or sizes[0] < 0:
            raise UserError("--learning-curve counts must be 0 or more")
        return sizes


CONFIG_CLASSES = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Returns (type, optional) for ``X | None`` annotations."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Adds one ``--kebab-case`` option per dataclass field (except ``skip``), typed, with the field's help text."""
    group = parser.add_argument_group(cls.__name__, cls.__doc__)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        tp, _ = _base_type(hints[field.name])
        if field.metadata.get("positional"):
            nargs = field.metadata["positional"]
            group.add_argument(field.name, **({} if nargs == "one" else {"nargs": nargs}), help=field.metadata["help"],
                               choices=typing.get_args(tp) if typing.get_origin(tp) is Literal else None,
                               default=argparse.SUPPRESS)
            continue
        flag = "--" + field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": field.metadata.get("help", ""), "dest": field.name,
                                  "default": argparse.SUPPRESS}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        elif typing.get_origin(tp) is list:
            # Several values after one flag, and the flag may be repeated: --model a --model b.
            kwargs.update(type=typing.get_args(tp)[0], nargs="+", action="extend")
            kwargs["metavar"] = field.metadata.get("metavar") or field.name.upper()
        else:
            kwargs["type"] = tp
            kwargs["metavar"] = field.metadata.get("metavar") or field.name.upper()
        default = field.default if field.default is not dataclasses.MISSING else "none"
        kwargs["help"] += f" [default: {default}]" if default != "" else " [required]"
        group.add_argument(flag, *field.metadata.get("flags", ()), **kwargs)


def build_parser(prog: str, doc: str | None, *classes: type) -> argparse.ArgumentParser:
    """The CLI of a ``python -m sentiment_tf.<prog>`` command: ``--config`` plus one option per field."""
    parser = argparse.ArgumentParser(prog=f"python -m sentiment_tf.{prog}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON or YAML file of options (command-line options win).")
    for cls in classes:
        add_dataclass_arguments(parser, cls)
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    """Reads a JSON or YAML config file into a flat ``{field: value}`` dict."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {path}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml  # installed with transformers

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as err:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"cannot parse config file {path}: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of option names to values")
    # Saved run configs are nested by section; accept both shapes.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key.endswith("Config"):
            flat.update(value)
        else:
            flat[key] = value
    return {k.replace("-", "_"): v for k, v in flat.items()}


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_BOUND_WORDS = {"at_least": ("at least", lambda v, b: v >= b), "above": ("above", lambda v, b: v > b),
                "below": ("below", lambda v, b: v < b), "at_most": ("at most", lambda v, b: v <= b)}


def checked_value(field: dataclasses.Field, hint: Any, value: Any) -> Any:
    """``value`` for ``field`` if its type and range fit (ints widen to floats), else a UserError naming the option."""
    option = "--" + field.name.replace("_", "-")
    tp, optional = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise UserError(f"{option} needs a value, got null")
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{option} must be one of {', '.join(map(str, typing.get_args(tp)))}; got {value!r}")
        return value
    if typing.get_origin(tp) is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{option} must be a list of strings, got {value!r}")
        return value
    ok = (isinstance(value, tp) and not (tp is int and isinstance(value, bool))) or (
        tp is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UserError(f"{option} must be {_TYPE_NAMES.get(tp, tp.__name__)}, got {value!r}")
    value = float(value) if tp is float else value
    for kind, bound in field.metadata.get("bounds", {}).items():
        words, holds = _BOUND_WORDS[kind]
        if not holds(value, bound):
            raise UserError(f"{option} must be {words} {bound:g}, got {value!r}")
    return value


def build_configs(values: dict[str, Any], classes: tuple[type, ...] = CONFIG_CLASSES) -> list[Any]:
    """Instantiates each dataclass from a flat dict: unknown keys, wrong types and out-of-range values
    are one-line errors (config files are checked exactly like flags)."""
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}; see --help for the valid ones")
    out = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        out.append(cls(**{f.name: checked_value(f, hints[f.name], values[f.name])
                          for f in dataclasses.fields(cls) if f.name in values}))
    return out


def parse_configs(parser: argparse.ArgumentParser, argv: list[str] | None,
                  classes: tuple[type, ...] = CONFIG_CLASSES, others: bool = False) -> tuple[list[Any], argparse.Namespace]:
    """Parses ``argv`` (plus an optional ``--config`` file) into the config dataclasses. ``others``: options
    the parser does not know are kept in ``ns.others`` (for a tool behind the command) instead of refused."""
    if others:
        ns, rest = parser.parse_known_args(argv)
        ns.others = rest
    else:
        ns = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if getattr(ns, "config", None):
        values.update(load_config_file(ns.config))
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(ns).items() if k in fields})
    return build_configs(values, classes), ns


def to_dict(*configs: Any) -> dict[str, dict[str, Any]]:
    """Nested ``{ClassName: fields}`` dict for saving next to a run or export."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}


@dataclasses.dataclass
class PretrainConfig:
    """Language-model pretraining on unlabelled text (options marked BERT or LSTM apply to that model only)."""

    model: Literal["bert", "lstm"] = option("'bert': masked-LM pretraining of a BERT; 'lstm': forward and backward "
                                            "LSTM language models with the classifier's encoder shapes.",
                                            default="bert")
    corpus: list[str] = option("Unlabelled text files (one text per line; CSV/TSV/JSONL/Excel use --text-col).",
                               metavar="FILE", default_factory=list)
    output: str = option("Checkpoint directory to create (must not exist or be empty).", default="")
    from_checkpoint: str | None = option("Continue pretraining this checkpoint (BERT: Hub id or directory, its "
                                         "vocabulary and size kept; LSTM: a directory of `--model lstm`, its "
                                         "tokenizer and shapes kept, frequent new corpus words added).",
                                         flags=("--from",), default=None)
    text_col: str = option("Column holding the text in CSV/TSV/JSONL/Excel corpus files.", default="text")
    vocab: str | None = option("Existing WordPiece vocab.txt to use instead of building one (from scratch only).",
                               default=None)
    vocab_size: int = option("BERT: size of the WordPiece vocabulary built from the corpus.", at_least=16, default=8000)
    min_frequency: int = option("Pieces (BERT) or tokens (LSTM) seen fewer times than this stay out of the built "
                                "vocabulary.", at_least=1, default=2)
    hidden_size: int = option("Hidden size (from scratch only).", at_least=1, default=256)
    layers: int = option("Transformer layers (from scratch only).", at_least=1, default=4)
    heads: int = option("Attention heads; must divide --hidden-size (from scratch only).", at_least=1, default=4)
    intermediate_size: int = option("Feed-forward size (from scratch only).", at_least=1, default=1024)
    max_length: int = option("Word pieces (BERT; [CLS]/[SEP] included) or tokens (LSTM) per training sequence; "
                             "longer texts are cut into several sequences.", default=128)
    mlm_probability: float = option("Share of word pieces masked per sequence (re-drawn every epoch).",
                                    default=0.15)
    epochs: int = option("Passes over the corpus (0 writes the initialised model: a random-init baseline).",
                         at_least=0, default=3)
    batch_size: int = option("Sequences per batch.", at_least=1, default=64)
    learning_rate: float | None = option("BERT: peak AdamW learning rate (linear warmup then decay) [5e-4]; LSTM: "
                                         "Adam learning rate [2e-3].", above=0, default=None)
    warmup_ratio: float = option("Fraction of steps with learning-rate warmup.", at_least=0, below=1, default=0.06)
    weight_decay: float = option("AdamW weight decay.", at_least=0, default=0.01)
    holdout: float = option("Share of texts held out to report masked-LM loss and perplexity.", default=0.02)
    max_texts: int | None = option("Use at most this many texts (after de-duplication, in random order).",
                                   at_least=1, default=None)
    lowercase: bool = option("Lower-case Latin letters (must match the fine-tuning --lowercase).", default=True)
    tokenizer: Literal["word", "char"] = option("LSTM: 'word' (jieba precise mode) or 'char' tokens, as `train`'s "
                                                "--tokenizer.", default="word")
    hmm: bool = option("LSTM: jieba HMM for words missing from the dictionary.", default=True)
    user_dict: str | None = option("LSTM: jieba user dictionary (copied into the output; the classifier uses it).",
                                   default=None)
    max_vocab: int = option("LSTM: keep at most this many tokens (most frequent first).", at_least=3, default=50000)
    embedding_dim: int = option("LSTM: embedding size (the classifier's --embedding-dim).", at_least=1, default=128)
    rnn_units: int = option("LSTM: units per direction (the classifier's --rnn-units).", at_least=1, default=128)
    rnn: Literal["lstm", "gru"] = option("LSTM: recurrent cell (the classifier's --rnn).", default="lstm")
    lm_dropout: float = option("LSTM: dropout of whole tokens' embeddings and of the RNN outputs.", at_least=0,
                               below=1, default=0.1)
    sampled: int = option("LSTM: softmax candidates sampled per batch for the training loss (the held-out "
                          "perplexity uses the full softmax).", at_least=1, default=1024)
    seed: int = option("Seed for the hold-out split, masking and initialisation.", default=42)
    run_dir: str | None = option("Directory for per-epoch backups and TensorBoard logs (default: "
                                 "runs/pretrain-<time>).", default=None)
    resume: str | None = option("Resume an interrupted pretraining run from its run directory.", default=None)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.resume:
            if not self.corpus:
                raise UserError("--corpus: give at least one unlabelled text file")
            if not self.output:
                raise UserError("--output: give the checkpoint directory to create")
        if not 0.0 < self.mlm_probability < 1.0:
            raise UserError(f"--mlm-probability must be between 0 and 1, got {self.mlm_probability}")
        if not 0.0 <= self.holdout < 0.5:
            raise UserError(f"--holdout must be between 0 and 0.5, got {self.holdout}")
        if self.max_length < 8:
            raise UserError(f"--max-length must be at least 8, got {self.max_length}")
