"""Loading labelled text with pandas, cleaning, de-duplication and leakage-free splitting.

Order matters: texts are cleaned and de-duplicated *before* splitting, texts that occur with
more than one label are dropped, and user-supplied validation/test texts are removed from the
training data, so no text is ever on both sides of an evaluation.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiment_tf.core.config import DEFAULT_DATA, DataConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import clean_text

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT, LABEL, Y = "text", "label", "y"  # column names of every frame this module returns
DOMAIN = "domain"  # present when DataConfig.domain_col is set

_CSV = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_JSON = {".jsonl", ".ndjson", ".json"}
_EXCEL = {".xlsx", ".xlsm", ".xls"}


def resolve_data_path(path: str) -> Path:
    """The path as given, or — for the bundled default — the copy beside this package."""
    p = Path(path)
    if not p.exists() and path == DEFAULT_DATA and (REPO_ROOT / DEFAULT_DATA).exists():
        return REPO_ROOT / DEFAULT_DATA
    return p


def decode_bytes(raw: bytes, path: str | Path) -> tuple[str, str]:
    """Decodes a text file as UTF-8, UTF-8 with BOM, UTF-16 (by BOM) or GB18030, in that order."""
    if raw.startswith(b"\xef\xbb\xbf"):
        candidates = ["utf-8-sig"]
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "gb18030"]  # GB18030 is a superset of GBK and GB2312
    for enc in candidates:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise UserError(f"cannot decode {path} as UTF-8, UTF-8 with BOM or GB18030/GBK; "
                    "re-save it as UTF-8")


def read_frame(path: str | Path) -> tuple[pd.DataFrame, str | None]:
    """Every column of a CSV/TSV/JSON lines/Excel file as strings (empty cells NaN), and the text
    encoding it was decoded from (None for Excel)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file not found: {path}")
    if p.is_dir():
        raise UserError(f"{path} is a directory; pass a CSV, TSV, JSON lines or Excel file")
    ext = p.suffix.lower()
    enc = None
    try:
        if ext in _EXCEL:
            frame = pd.read_excel(p, dtype=str)
        else:
            text, enc = decode_bytes(p.read_bytes(), p)
            log.debug("decoded %s as %s", p, enc)
            if ext in _JSON:
                lines = ext != ".json" or not text.lstrip().startswith("[")
                frame = pd.read_json(io.StringIO(text), lines=lines, dtype=False)
            else:
                sep = _CSV.get(ext, None)
                # Only truly empty cells are missing: "NA" or "null" can be real review text.
                frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                    na_values=[""], engine="python" if sep is None else "c")
                if sep == "\t":
                    frame = _plain_tsv(text, frame, p)
    except UserError:
        raise
    except ImportError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    except (ValueError, pd.errors.ParserError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot parse {path} as {ext.lstrip('.') or 'CSV'}: {first}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, enc


def read_text_rows(path: str | Path, text_col: str, what: str) -> tuple[pd.DataFrame, str | None]:
    """A file's rows (every column, as strings) and its encoding; a .txt file is one text per line."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise UserError(f"{what} file not found: {path}")
        text, enc = decode_bytes(p.read_bytes(), p)
        return pd.DataFrame({text_col: [line for line in text.splitlines() if line.strip()]}), enc
    frame, enc = read_frame(p)
    if text_col not in frame.columns:
        raise UserError(f"column {text_col!r} not found in {what} {path}; its columns are: "
                        f"{', '.join(frame.columns) or '(none)'} (choose with --text-col)")
    return frame, enc


def _plain_tsv(text: str, quoted: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A TSV read again with quote characters as text when reading them as quotes lost rows: in a plain
    TSV (one record per line, like ChnSentiCorp's) a review starting with '"' would otherwise swallow
    the lines after it."""
    lines = [line for line in text.splitlines() if line.strip()]
    records, fields = len(lines) - 1, lines[0].count("\t") if lines else 0
    if len(quoted) == records or any(line.count("\t") != fields for line in lines):
        return quoted  # nothing lost, or records span lines (quoted newlines): quotes are quotes
    plain = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False, na_values=[""],
                        quoting=csv.QUOTE_NONE)
    if len(plain) != records:
        return quoted
    log.warning("%s: quote characters read as text (a plain TSV, one record per line): %d rows, not %d",
                path, len(plain), len(quoted))
    return plain


def read_table(path: str | Path, text_col: str, label_col: str | None, domain_col: str | None = None) -> pd.DataFrame:
    """Reads CSV/TSV/JSON lines/Excel into a frame of strings with columns ``text`` (``label``, ``domain``).

    Missing values are NaN; the file's own column names are checked and listed on a mismatch.
    """
    frame, _ = read_frame(path)
    wanted = [c for c in (text_col, label_col, domain_col) if c is not None]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        cols = ", ".join(frame.columns) if len(frame.columns) else "(none)"
        raise UserError(f"column {missing[0]!r} not found in {path}; its columns are: {cols} "
                        f"(choose with --text-col/--label-col{'/--domain-col' if domain_col else ''})")
    out = pd.DataFrame({TEXT: frame[text_col]})
    if label_col is not None:
        out[LABEL] = frame[label_col]
    if domain_col is not None:
        out[DOMAIN] = frame[domain_col].fillna("(none)")
    # JSON and Excel may hold numbers; compare and store everything as strings.
    for col in out.columns:
        out[col] = out[col].map(_as_str)
    if out.empty:
        raise UserError(f"{path} has no data rows")
    return out


def _as_str(value: object) -> object:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return float("nan")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # labels 1.0/0.0 from a column that had gaps
    return str(value).strip()


# One `word/tag` token (People's Daily annotation), optionally opening or closing a `[... ]nt` compound.
_TAGGED_TOKEN = re.compile(r"^\[?(.+?)/[A-Za-z]+\]?[A-Za-z]*$")


def strip_tags(line: str) -> str:
    """``迈向/v  充满/v  [中国/ns 政府/n]nt`` → ``迈向充满中国政府``; other lines are returned unchanged."""
    tokens = line.split()
    if not tokens:
        return line
    words = [_TAGGED_TOKEN.match(t) for t in tokens]
    if sum(m is not None for m in words) < 0.8 * len(tokens):
        return line  # ordinary text that happens to contain a slash
    # The corpus segments words with spaces; Chinese text has none, so words are joined directly,
    # except between two Latin/digit words, which keep a space.
    out: list[str] = []
    for m, token in zip(words, tokens):
        word = m.group(1) if m else token
        if out and out[-1][-1:].isascii() and out[-1][-1:].isalnum() and word[:1].isascii() and word[:1].isalnum():
            out.append(" ")
        out.append(word)
    return "".join(out)


def read_texts(paths: list[str], text_col: str, option: str) -> list[str]:
    """Raw unlabelled texts from every file, in order (empty lines dropped): a table's ``text_col``,
    or one text per line (People's Daily ``word/tag`` lines are turned back into plain text).
    ``option`` names the flag the paths came from, for error messages."""
    texts: list[str] = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{option} {path}: file not found")
        if p.suffix.lower() in {*_CSV, *_JSON, *_EXCEL}:
            lines = read_table(p, text_col, None)[TEXT].dropna().astype(str).tolist()
        else:
            text, _ = decode_bytes(p.read_bytes(), p)
            lines = [strip_tags(line) for line in text.splitlines()]
        lines = [line for line in lines if line.strip()]
        log.info("%s: %d texts", path, len(lines))
        texts.extend(lines)
    return texts


@dataclasses.dataclass
class LabelMap:
    """Label names in id order; integer-like names sort numerically, others as strings."""

    names: list[str]

    @classmethod
    def from_labels(cls, labels: pd.Series) -> "LabelMap":
        unique = set(labels)
        if all(_is_int(x) for x in unique):
            return cls(sorted(unique, key=int))
        return cls(sorted(unique))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, labels: pd.Series) -> pd.Series:
        return labels.map(self.label2id)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def clean_frame(frame: pd.DataFrame, lowercase: bool = True, source: str = "data") -> tuple[pd.DataFrame, dict]:
    """Cleans texts, drops empties, exact duplicates and texts seen with conflicting labels.

    Returns the cleaned frame and a dict of counts for the run's report.
    """
    stats = {"rows_read": len(frame)}
    frame = frame.copy()
    missing_label = frame[LABEL].isna() | (frame[LABEL] == "") if LABEL in frame else pd.Series(False, index=frame.index)
    frame[TEXT] = frame[TEXT].map(lambda t: clean_text(t, lowercase) if isinstance(t, str) else "")
    empty_text = frame[TEXT] == ""
    stats["missing_label"] = int((missing_label & ~empty_text).sum())
    stats["empty_text"] = int(empty_text.sum())
    frame = frame[~missing_label & ~empty_text]
    n = len(frame)
    frame = frame.drop_duplicates(subset=[TEXT, LABEL] if LABEL in frame else [TEXT])
    stats["duplicates"] = n - len(frame)
    stats["conflicting_texts"] = 0
    if LABEL in frame:
        n_labels = frame.groupby(TEXT)[LABEL].transform("nunique")
        conflicts = frame[n_labels > 1]
        if len(conflicts):
            examples = conflicts[TEXT].drop_duplicates().head(3).tolist()
            stats["conflicting_texts"] = int(conflicts[TEXT].nunique())
            log.warning("%s: dropped %d texts that appear with more than one label, e.g. %s",
                        source, stats["conflicting_texts"], "; ".join(e[:30] for e in examples))
        frame = frame[n_labels <= 1]
    stats["rows_kept"] = len(frame)
    log.info("%s: %d rows read, %d without label, %d empty after cleaning, %d duplicates, "
             "%d conflicting texts dropped -> %d rows", source, stats["rows_read"],
             stats["missing_label"], stats["empty_text"], stats["duplicates"],
             stats["conflicting_texts"], stats["rows_kept"])
    if frame.empty:
        raise UserError(f"no usable rows left in {source} after cleaning (empty texts, missing labels "
                        "and conflicting duplicates are dropped)")
    return frame.reset_index(drop=True), stats


@dataclasses.dataclass
class Splits:
    """Train/validation/test frames with columns ``text``, ``label`` (name) and ``y`` (id)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    labels: LabelMap
    stats: dict


def _load_clean(path: str, cfg: DataConfig, role: str) -> tuple[pd.DataFrame, dict]:
    frame = read_table(resolve_data_path(path), cfg.text_col, cfg.label_col, cfg.domain_col)
    return clean_frame(frame, cfg.lowercase, source=f"{role} ({path})")


def _drop_overlap(frame: pd.DataFrame, other: pd.DataFrame, name: str, other_name: str,
                  stats: dict) -> pd.DataFrame:
    """``frame`` without the texts that also occur in ``other``; the count goes to ``stats["overlap_removed"]``."""
    overlap = frame[TEXT].isin(set(other[TEXT]))
    if overlap.any():
        log.warning("removed %d texts from %s that also occur in %s", int(overlap.sum()), name, other_name)
    stats.setdefault("overlap_removed", {})[f"{name}_vs_{other_name}"] = int(overlap.sum())
    return frame[~overlap].reset_index(drop=True)


def _stratified_split(frame: pd.DataFrame, fraction: float, seed: int, role: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame[LABEL].value_counts()
    need = max(2, int(round(1 / fraction)) if fraction > 0 else 2)
    rare = counts[counts < 2]
    if len(rare):
        raise UserError(f"label {rare.index[0]!r} has only {int(rare.iloc[0])} example(s); a stratified "
                        f"{role} split needs at least 2 per label — add examples or pass --{role}-data")
    try:
        return train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame[LABEL])
    except ValueError as err:
        raise UserError(f"cannot split off a {role} set with {fraction:.0%} of {len(frame)} rows and "
                        f"{len(counts)} labels ({err}); each label needs about {need}+ examples, or "
                        f"pass --{role}-data") from None


def load_splits(cfg: DataConfig, labels: LabelMap | None = None) -> Splits:
    """Loads, cleans and splits the data described by ``cfg``.

    ``labels`` fixes the label set (fine-tuning keeps the source model's); every label in the data
    must then be one of them, and the training data may hold a subset.

    Example:
        >>> splits = load_splits(DataConfig(data="data/reviews.csv"))
        >>> splits.labels.names
        ['正面', '负面']
    """
    train, stats = _load_clean(cfg.data, cfg, "train")
    all_stats = {"train_file": stats}
    test = val = None
    if cfg.test_data:
        test, all_stats["test_file"] = _load_clean(cfg.test_data, cfg, "test")
        train = _drop_overlap(train, test, "train", "test", all_stats)
    if cfg.val_data:
        val, all_stats["val_file"] = _load_clean(cfg.val_data, cfg, "val")
        if test is not None:
            val = _drop_overlap(val, test, "validation", "test", all_stats)
        train = _drop_overlap(train, val, "train", "validation", all_stats)

    if labels is not None:
        for role, frame in (("data", train), ("validation", val), ("test", test)):
            unknown = sorted(set(frame[LABEL]) - set(labels.names)) if frame is not None else []
            if unknown:
                raise UserError(f"{role} label(s) {', '.join(map(repr, unknown[:5]))} are not labels of the model "
                                f"({', '.join(labels.names)}); map them to those names in --label-col")
    if train[LABEL].nunique() < 2:
        only = train[LABEL].iloc[0] if len(train) else "-"
        raise UserError(f"the training data has a single label ({only!r}); a classifier needs at least "
                        f"two — check --label-col ({cfg.label_col!r})")
    n_labels = train[LABEL].nunique()
    if len(train) >= 10 and n_labels > len(train) / 2:
        raise UserError(f"--label-col {cfg.label_col!r} has {n_labels} distinct values in {len(train)} rows; "
                        "it does not look like a label column — check --label-col/--text-col")
    if test is None:
        train, test = _stratified_split(train, cfg.test_size, cfg.seed, "test")
    if val is None:
        # Validation is a fraction of the whole, so take it relative to what is left.
        train, val = _stratified_split(train, cfg.val_size / (1 - (cfg.test_size if not cfg.test_data else 0)),
                                       cfg.seed, "val")

    labels = labels or LabelMap.from_labels(train[LABEL])
    for role, frame in (("validation", val), ("test", test)):
        unseen = sorted(set(frame[LABEL]) - set(labels.names))
        if unseen:
            raise UserError(f"{role} label(s) {', '.join(map(repr, unseen[:5]))} never occur in the training "
                            f"data (training labels: {', '.join(labels.names)}); fix the labels or add "
                            "training examples")
    out = []
    for frame in (train, val, test):
        frame = frame.reset_index(drop=True).copy()
        frame[Y] = labels.encode(frame[LABEL]).astype("int64")
        out.append(frame)
    sizes = {"train": len(out[0]), "val": len(out[1]), "test": len(out[2])}
    all_stats["split_sizes"] = sizes
    all_stats["label_counts"] = {name: int(c) for name, c in out[0][LABEL].value_counts().items()}
    log.info("split: %s; labels: %s", sizes, labels.names)
    return Splits(*out, labels=labels, stats=all_stats)
