"""Speed of the raw-text LSTM SavedModel (jieba in the graph) beside jieba alone and beside the
previous design (Python jieba in front of a SavedModel that takes segmented text).

    python bench/bench_raw_text_lstm.py                  # about 4 minutes on 2 cores
    python bench/bench_raw_text_lstm.py --texts 20000 --batch-size 256

On the same 20,000 online_shopping_10_cats reviews (raw, as users have them), in one run:

* jieba alone:   ``jieba.Tokenizer.lcut(text, HMM=True)`` on the cleaned texts, one process — the
                 ceiling of any design that segments in Python (faster than on the raw texts);
* previous path: ``Tokenizer.segment`` (cleaning + jieba) in Python, then the previous export's
                 graph (segmented text → ids → model, one call per batch);
* raw-text model: the exported SavedModel, loaded with ``tf.saved_model.load``, one
                 ``serving_default`` call per batch of raw strings (cleaning, jieba, ids and model).

The model is the default architecture (embedding 128, bidirectional LSTM of 128 units, max
pooling, 200 tokens) with the vocabulary of these texts (min frequency 2) and untrained weights:
speed does not depend on the weights. Every path gets the same batches, of texts sorted by length
(as ``Predictor.predict`` batches them).

Target (issue #29): the raw-text model ≥ 1.0 × jieba alone. Also reported: what the jieba tables
add to the export (the same model and vocabulary exported in character mode has none; goal ≤ 25 MB) and the
export's load time in a fresh process (load, then the first call of each signature).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LOAD = """
import sys, time
t0 = time.perf_counter()
import tensorflow as tf, tensorflow_text  # noqa: F401
imported = time.perf_counter()
model = tf.saved_model.load(sys.argv[1])
loaded = time.perf_counter()
for name in ("serving_default", "tokenize", "embed"):
    model.signatures[name](text=tf.constant(["这家酒店很干净"]))
print(f"{loaded - imported:.2f} {time.perf_counter() - loaded:.2f}")
"""


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def export(texts: list[str], tokenizer, out: Path, vocabulary: list[str] | None = None):
    import keras

    from sentiment_tf.core.config import ModelConfig
    from sentiment_tf.models.lstm import classifier as lstm
    from sentiment_tf.models.lstm.preprocessor import Preprocessor, build_vocabulary

    keras.utils.set_random_seed(0)
    vocabulary = vocabulary or build_vocabulary(tokenizer.segment(texts), min_freq=2)
    preprocessor = Preprocessor(tokenizer, vocabulary, 200)
    model = lstm.build_model(ModelConfig(), len(vocabulary) + 2, 2)
    version = lstm.export(model, preprocessor, ["正面", "负面"], out, config={}, metrics={}, check_texts=texts[:256])
    return model, preprocessor, version


def rate(n: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "online_shopping_10_cats" /
                                              "online_shopping_10_cats.csv"))
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=1024, help="texts per call (serve's --max-batch default)")
    args = parser.parse_args()

    import tensorflow as tf

    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.models.lstm.preprocessor import Tokenizer

    frame = pd.read_csv(args.data).dropna(subset=["review"])
    texts = frame["review"].astype(str).sample(min(args.texts, len(frame)), random_state=0).tolist()
    n, bs = len(texts), args.batch_size
    print(f"{n} reviews, {np.mean([len(t) for t in texts]):.1f} characters on average, batches of {bs}")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Tokenizer("word")
        model, preprocessor, version = export(texts, tokenizer, Path(tmp) / "word")
        # The same model and vocabulary with the character tokenizer: an export without jieba's tables.
        _, _, char_version = export(texts, Tokenizer("char"), Path(tmp) / "char", preprocessor.vocabulary)
        word_mb, char_mb = size_mb(version), size_mb(char_version)
        load_s, first_calls_s = subprocess.run([sys.executable, "-c", LOAD, str(version)], capture_output=True,
                                               text=True, check=True).stdout.split()
        served = tf.saved_model.load(str(version)).signatures["serving_default"]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def previous(segmented):  # the previous export's serving_default: segmented text → probabilities
            return model(preprocessor.ids(segmented).to_tensor(0), training=False)

        ordered = sorted(texts, key=len)
        batches = [ordered[i:i + bs] for i in range(0, n, bs)]
        cleaned = [clean_text(t) for t in ordered]  # jieba on cleaned text ran faster than on raw here
        served(text=tf.constant(batches[0]))
        previous(tf.constant(tokenizer.segment(batches[0])))
        results = {
            "jieba alone (Python)": rate(n, lambda: [tokenizer.jieba.lcut(t, HMM=True) for t in cleaned]),
            "previous path (Python jieba + SavedModel)": rate(n, lambda: [
                previous(tf.constant(tokenizer.segment(b))) for b in batches]),
            "raw-text SavedModel (jieba in the graph)": rate(n, lambda: [served(text=tf.constant(b)) for b in batches]),
        }
    jieba_rate = results["jieba alone (Python)"]
    print("\n| path | texts/s | × jieba alone |\n|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value / jieba_rate:.2f} |")
    ratio = results["raw-text SavedModel (jieba in the graph)"] / jieba_rate
    dictionary_mb = word_mb - char_mb
    print(f"\nexport: {word_mb:.1f} MB (word mode) vs {char_mb:.1f} MB (character mode, same model): the jieba tables "
          f"add {dictionary_mb:.1f} MB")
    print(f"fresh process: load {load_s} s, then the first call of its three signatures {first_calls_s} s")
    ok_speed, ok_size = ratio >= 1.0, dictionary_mb <= 25
    print(f"raw-text model ≥ 1.0 × jieba alone: {ratio:.2f} {'PASS' if ok_speed else 'FAIL'}")
    print(f"jieba tables ≤ 25 MB: {dictionary_mb:.1f} MB {'PASS' if ok_size else 'FAIL'}")
    return 0 if ok_speed and ok_size else 1


if __name__ == "__main__":
    sys.exit(main())
