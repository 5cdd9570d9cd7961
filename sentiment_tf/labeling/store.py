"""The labels given on the page: ``labels.csv``, rewritten atomically after every label and undo, so a
killed server loses nothing and ``finetune --data labels.csv`` reads it as it is."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import clean_text

COLUMNS = ["text", "label", "annotator", "time", "suggestion", "suggestion_probability", "model_version"]
_STALE = object()  # LabelStore.agreement not computed since the last write


@dataclasses.dataclass
class Label:
    text: str
    label: str
    annotator: str
    time: str  # ISO 8601, UTC
    suggestion: str  # what the model proposed when the text was shown
    suggestion_probability: float
    model_version: str  # the version that ranked and suggested ("1", "lstm-labels/2", ...)
    key: str = ""  # the cleaned text (not written): what makes two texts the same


class LabelStore:
    """Every label given so far (two rows for a text labelled by two annotators: ``--overlap``), in order.

    Args:
        path: the CSV (``text,label,annotator,time,suggestion,suggestion_probability,model_version``);
            an existing one is read back and continued.
        label_names: the model's labels; a file with others is refused.
        lowercase: the model's cleaning, which decides when two texts are the same.
    """

    def __init__(self, path: str | Path, label_names: list[str], lowercase: bool):
        self.path = Path(path)
        self.label_names = list(label_names)
        self.lowercase = lowercase
        self.rows: list[Label] = self._read() if self.path.exists() else []
        self._agreement: dict | None | object = _STALE  # computed on demand, made stale by every write

    def key(self, text: str) -> str:
        return clean_text(text, self.lowercase)

    def _read(self) -> list[Label]:
        try:
            frame = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise UserError(f"--output {self.path}: cannot read it as the labels CSV to continue "
                            f"({type(err).__name__}); move it away or name another --output") from None
        missing = [c for c in ("text", "label") if c not in frame.columns]
        if missing:
            raise UserError(f"--output {self.path}: exists without the column(s) {', '.join(missing)} of a labels "
                            "file; move it away or name another --output")
        unknown = sorted(set(frame["label"]) - set(self.label_names))
        if unknown:
            raise UserError(f"--output {self.path}: labels {', '.join(map(repr, unknown[:5]))} are not the model's "
                            f"({', '.join(self.label_names)}); label with the model they were given for")
        for column in COLUMNS:
            if column not in frame.columns:
                frame[column] = ""
        frame["suggestion_probability"] = pd.to_numeric(frame["suggestion_probability"], errors="coerce")
        return [Label(**{c: r[c] for c in COLUMNS}, key=self.key(r["text"])) for r in frame[COLUMNS].to_dict("records")]

    def write(self) -> None:
        self._agreement = _STALE
        buffer = io.StringIO()
        pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in self.rows], columns=COLUMNS).to_csv(buffer, index=False)
        atomic.write_bytes(self.path, buffer.getvalue().encode("utf-8"))

    def add(self, label: Label) -> None:
        label.key = label.key or self.key(label.text)
        self.rows.append(label)
        self.write()

    def remove_last(self, annotator: str) -> Label | None:
        """Takes back ``annotator``'s most recent label (None when they gave none)."""
        for i in range(len(self.rows) - 1, -1, -1):
            if self.rows[i].annotator == annotator:
                row = self.rows.pop(i)
                self.write()
                return row
        return None

    def annotators_of(self, key: str) -> list[str]:
        return [r.annotator for r in self.rows if r.key == key]

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in self.label_names}
        for r in self.rows:
            out[r.label] += 1
        return out

    def by_text(self) -> dict[str, list[Label]]:
        out: dict[str, list[Label]] = {}
        for r in self.rows:
            out.setdefault(r.key, []).append(r)
        return out

    def agreement(self) -> dict | None:
        """Cohen's kappa between the first two annotators of every text labelled twice (``--overlap``);
        computed once per change of the labels (the page asks for it with every text)."""
        if self._agreement is _STALE:
            self._agreement = self._compute_agreement()
        return self._agreement

    def _compute_agreement(self) -> dict | None:
        from sklearn.metrics import cohen_kappa_score

        pairs = [(rows[0].label, rows[1].label) for rows in self.by_text().values()
                 if len(rows) >= 2 and rows[0].annotator != rows[1].annotator]
        if not pairs:
            return None
        a, b = zip(*pairs)
        same = sum(x == y for x, y in pairs) / len(pairs)
        # one label on both sides of every pair: kappa is undefined (0/0); the raw agreement still says it
        kappa = float(cohen_kappa_score(a, b, labels=self.label_names)) if len(set(a) | set(b)) > 1 else None
        return {"pairs": len(pairs), "kappa": kappa, "agreement": same}
