"""Files bigger than memory: read rows in chunks, write each chunk's results as it is done, and pick
up after a kill where the last complete chunk ended.

CSV/TSV and JSON lines stream (pandas ``chunksize``); a .txt file streams line by line; Excel and a
JSON array are read whole (their formats cannot be read in parts) and then handed out in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from sentiment_tf.core import atomic
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.splits import _CSV, _JSON, read_text_rows

SNIFF_BYTES = 1 << 20
WHOLE_TSV_BYTES = 256 << 20


def sniff_encoding(path: Path) -> str:
    """The encoding :func:`sentiment_tf.data.splits.decode_bytes` would choose, from the file's first megabyte."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if len(head) == SNIFF_BYTES:
        head = head[: head.rfind(b"\n") + 1] or head  # not a character cut in half
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def read_chunks(path: str | Path, text_col: str, rows: int, what: str = "input") -> tuple[Iterator[pd.DataFrame], str | None]:
    """The file's rows (every column as strings, empty cells NaN) in frames of up to ``rows``, and its
    encoding; the text column is checked before the first chunk is returned."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file not found: {path}" if not p.is_dir() else f"{path} is a directory; pass a file")
    ext = p.suffix.lower()
    if ext == ".txt":
        encoding = sniff_encoding(p)
        return _lines(p, encoding, text_col, rows), encoding
    # A plain TSV may need its quotes read as text, which only the whole file shows (data._plain_tsv).
    if ext in (".csv",) or (ext in _CSV and p.stat().st_size > WHOLE_TSV_BYTES) or (ext in _JSON and ext != ".json"):
        encoding = sniff_encoding(p)
        try:
            if ext in _JSON:
                reader = pd.read_json(p, lines=True, dtype=False, chunksize=rows, encoding=encoding)
            else:
                reader = pd.read_csv(p, sep=_CSV[ext], dtype=str, keep_default_na=False, na_values=[""],
                                     chunksize=rows, encoding=encoding)
            first = next(iter(reader), None)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise UserError(f"cannot parse {path}: {str(err).strip().splitlines()[0] if str(err).strip() else err}") from None
        if first is None:
            raise UserError(f"{path} has no data rows")
        first.columns = [str(c).strip() for c in first.columns]
        if text_col not in first.columns:
            raise UserError(f"column {text_col!r} not found in {what} {path}; its columns are: "
                            f"{', '.join(first.columns) or '(none)'} (choose with --text-col)")
        return _continue(first, reader, path), encoding
    frame, encoding = read_text_rows(p, text_col, what)
    return (frame.iloc[i:i + rows] for i in range(0, len(frame), rows)), encoding


def _continue(first: pd.DataFrame, reader: Any, path: str | Path) -> Iterator[pd.DataFrame]:
    yield first
    columns = list(first.columns)
    try:
        for chunk in reader:
            chunk.columns = columns
            yield chunk
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"cannot parse {path} past row {len(first)}: {str(err).strip().splitlines()[0]}") from None


def _lines(path: Path, encoding: str, text_col: str, rows: int) -> Iterator[pd.DataFrame]:
    batch: list[str] = []
    with open(path, encoding=encoding, newline="") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                batch.append(line)
            if len(batch) == rows:
                yield pd.DataFrame({text_col: batch})
                batch = []
    if batch:
        yield pd.DataFrame({text_col: batch})


class ResumableCsv:
    """A CSV written chunk by chunk to ``<output>.partial`` (each chunk flushed to disk, then the row
    count and byte length recorded in ``<output>.partial.json``) and renamed to ``output`` when complete.
    The same job started again (same ``job`` description) continues after the last recorded chunk,
    cutting off anything a kill left half-written; another job starts over."""

    def __init__(self, output: str | Path, job: dict[str, Any], bom: bool):
        self.output = Path(output)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.state_path = self.output.with_name(self.output.name + ".partial.json")
        self.job = hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()
        self.bom = bom
        self.rows = self.bytes = 0
        state = self._state()
        if state is not None and state.get("job") == self.job and self.partial.is_file() \
                and self.partial.stat().st_size >= state["bytes"]:
            self.rows, self.bytes = int(state["rows"]), int(state["bytes"])
            with open(self.partial, "r+b") as f:
                f.truncate(self.bytes)
        else:
            self.partial.unlink(missing_ok=True)
            self.state_path.unlink(missing_ok=True)

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def append(self, frame: pd.DataFrame) -> None:
        text = frame.to_csv(index=False, header=self.rows == 0 and self.bytes == 0)
        data = text.encode("utf-8-sig" if self.bom and self.bytes == 0 else "utf-8")
        with open(self.partial, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.rows += len(frame)
        self.bytes += len(data)
        atomic.write_json(self.state_path, {"job": self.job, "rows": self.rows, "bytes": self.bytes})

    def finish(self) -> None:
        if self.bytes == 0:
            self.append(pd.DataFrame())
        os.chmod(self.partial, atomic.file_mode())
        os.replace(self.partial, self.output)
        self.state_path.unlink(missing_ok=True)


def job_description(input_path: str | Path, **options: Any) -> dict[str, Any]:
    """What makes two runs the same job: the input file (path, size, modification time) and the options."""
    st = Path(input_path).stat()
    return {"input": str(Path(input_path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, **options}
