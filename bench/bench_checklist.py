"""The behavioural suite (`bench/checklist.py`, CheckList-style templates written here, never trained on)
for every model of `bench_distill.py`: failure rate per capability, mean over the seeds' exports.

    python bench/bench_checklist.py --work /tmp/bench-distill-XXXX      # bench_distill's work directory

TF-IDF (char 1–3-gram + LinearSVC, C on dev) is refitted on the same ChnSentiCorp split; the others are
the exports in the work directory: `teacher-<seed>` (m3e-small fine-tuned), `lstm-<seed>` and the
distilled `distilled-…-<seed>` runs chosen on dev (the settings are read from the run names the
benchmark printed: pass `--distilled T4-a0.2-aug1`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.bench_chnsenticorp import DEFAULT_DATA, split_files  # noqa: E402
from bench.checklist import failure_rates  # noqa: E402


def tfidf_positive(splits):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from sentiment_tf.data.cleaning import clean_text

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    x_train, x_dev = vec.fit_transform(splits.train["text"]), vec.transform(splits.val["text"])
    fitted = [(float((s.predict(x_dev) == splits.val["y"].to_numpy()).mean()), -c, s)
              for c in (0.1, 0.25, 0.5, 1.0, 2.0) for s in [LinearSVC(C=c).fit(x_train, splits.train["y"])]]
    svm = max(fitted, key=lambda t: t[:2])[2]
    positive = splits.labels.names.index("1")
    return lambda texts: (svm.predict(vec.transform([clean_text(t) for t in texts])) == positive).astype(float)


def export_positive(path: Path):
    from sentiment_tf.serving.predictor import Predictor

    predictor = Predictor.load(path)
    column = predictor.label_names.index("1")
    return lambda texts: predictor.predict(texts).probabilities[:, column]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--distilled", default="T4-a0.2-aug1", help="The distillation settings chosen on dev.")
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits

    files = split_files(args.chnsenticorp)
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]), test_data=str(files["test"]),
                                    text_col="text_a", label_col="label"))
    work = Path(args.work)
    models = {"char TF-IDF + LinearSVC": [tfidf_positive(splits)]}
    for name, pattern in (("m3e-small teacher", "teacher-{}"), ("LSTM on the labels", "lstm-{}"),
                          (f"LSTM distilled ({args.distilled})", f"distilled-{args.distilled}-{{}}")):
        models[name] = [export_positive(work / pattern.format(s)) for s in range(args.seeds)
                        if (work / pattern.format(s)).is_dir()]
    rates = {name: [failure_rates(f) for f in fs] for name, fs in models.items() if fs}
    capabilities = list(next(iter(rates.values()))[0])
    names = list(rates)
    print(f"\nfailure rate % per capability (mean over {', '.join(f'{len(rates[n])}' for n in names)} model(s))")
    print(f"{'capability':<40}{'cases':>6}" + "".join(f"{n[:22]:>24}" for n in names))
    for cap in capabilities:
        cases = rates[names[0]][0][cap][1]
        print(f"{cap:<40}{cases:>6}" + "".join(f"{100 * np.mean([r[cap][0] for r in rates[n]]):>24.1f}" for n in names))
    overall = {n: np.mean([np.mean([r[c][0] for c in capabilities]) for r in rates[n]]) for n in names}
    print(f"{'mean over capabilities':<46}" + "".join(f"{100 * overall[n]:>24.1f}" for n in names))


if __name__ == "__main__":
    main()
