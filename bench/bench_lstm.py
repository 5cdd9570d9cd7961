"""LSTM benchmark on the bundled corpus: ours vs a TF-IDF+LinearSVC baseline vs a plain BiLSTM.

    python bench/bench_lstm.py            # about 6 minutes on 2 CPU cores

One run, one seeded split (the one `python -m sentiment_tf.train` uses), three models:

* ours:      the default `sentiment_tf` LSTM (train.py's defaults, length-bucketed batches);
* baseline:  character 1–3-gram TF-IDF + LinearSVC (scikit-learn), trained on the same train split;
* plain:     the tutorial BiLSTM — Embedding → Bidirectional(LSTM) → Dense, every text padded
             (pre-padding, as keras' pad_sequences does) to 128 tokens, no masking.

Training throughput is samples/s of the fastest epoch after the first (the first includes tracing).
Targets (issue #2): ours ≥ baseline + 1.5 accuracy points; ours ≥ 2× plain samples/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.common import epoch_timer, samples_per_s  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="Override epochs for both neural models.")
    parser.add_argument("--plain-epochs", type=int, default=3, help="Epochs for the plain BiLSTM.")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from sentiment_tf.config import DataConfig, ModelConfig, TokenizerConfig, TrainConfig
    from sentiment_tf.data import load_splits
    from sentiment_tf.errors import setup_logging
    from sentiment_tf.finetune import tfidf_accuracy
    from sentiment_tf.models import lstm
    from sentiment_tf.report import evaluate
    from sentiment_tf.text import Tokenizer, build_vocabulary

    setup_logging()
    data_cfg, tok_cfg, model_cfg = DataConfig(), TokenizerConfig(), ModelConfig()
    train_cfg = TrainConfig().resolved_for("lstm")
    if args.epochs:
        train_cfg.epochs = args.epochs
    splits = load_splits(data_cfg)
    y_train, y_test = splits.train["y"].to_numpy(), splits.test["y"].to_numpy()
    n_train = len(y_train)

    # Baseline: character n-gram TF-IDF + linear SVM.
    t0 = time.perf_counter()
    base_acc = tfidf_accuracy(splits.train, splits.test)
    base_time = time.perf_counter() - t0

    tokenizer = Tokenizer(tok_cfg.tokenizer, tok_cfg.hmm, data_cfg.lowercase)
    seg = {name: tokenizer.segment(f["text"], cleaned=True)
           for name, f in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    vocab = build_vocabulary(seg["train"], tok_cfg.min_freq, tok_cfg.max_vocab)

    # Ours: exactly the training path of `python -m sentiment_tf.train`.
    timer = epoch_timer(keras)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        model, lookup, history = lstm.fit(splits, seg, vocab, tok_cfg, model_cfg, train_cfg, Path(run_dir),
                                          seed=data_cfg.seed, extra_callbacks=[timer])
        ours_time = time.perf_counter() - t0
    ours = evaluate(y_test, lstm.predict_proba(model, seg["test"], lookup, tok_cfg.max_tokens),
                    splits.labels.names)
    ours_sps = samples_per_s(n_train, timer.times)

    # Plain BiLSTM padded to 128, as a tutorial would write it.
    keras.utils.set_random_seed(data_cfg.seed)
    def padded(name):
        ids = lstm.segmented_to_ids(tf.constant(seg[name]), lookup, 10**6)
        return keras.utils.pad_sequences(ids.to_list(), maxlen=128)  # pre-padding and pre-truncation
    plain = keras.Sequential([
        keras.Input(shape=(128,), dtype="int64"),
        keras.layers.Embedding(len(vocab) + 2, model_cfg.embedding_dim),
        keras.layers.Bidirectional(keras.layers.LSTM(model_cfg.rnn_units)),
        keras.layers.Dense(len(splits.labels.names), activation="softmax"),
    ])
    plain.compile(optimizer=keras.optimizers.Adam(train_cfg.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    plain_timer = epoch_timer(keras)
    t0 = time.perf_counter()
    plain.fit(padded("train"), y_train, validation_data=(padded("val"), splits.val["y"].to_numpy()),
              batch_size=train_cfg.batch_size, epochs=args.plain_epochs, verbose=2, callbacks=[
                  plain_timer, keras.callbacks.EarlyStopping(patience=train_cfg.patience,
                                                             restore_best_weights=True)])
    plain_time = time.perf_counter() - t0
    plain_acc = float((plain.predict(padded("test"), verbose=0).argmax(-1) == y_test).mean())
    plain_sps = samples_per_s(n_train, plain_timer.times)

    print(f"\nsentiment_tf LSTM benchmark — bundled corpus, seed {data_cfg.seed}: "
          f"{n_train} train / {len(y_test)} test texts, {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"{'model':<54}{'test acc':>10}{'train samples/s':>17}{'fit time':>10}")
    print(f"{'ours: ' + model.name + ' (bucketed, max-pooled)':<54}{ours.accuracy:>10.4f}{ours_sps:>17.0f}"
          f"{ours_time:>9.0f}s")
    print(f"{'baseline: char 1-3gram TF-IDF + LinearSVC':<54}{base_acc:>10.4f}{'-':>17}{base_time:>9.0f}s")
    print(f"{'plain BiLSTM padded to 128':<54}{plain_acc:>10.4f}{plain_sps:>17.0f}{plain_time:>9.0f}s")
    gain, speed = 100 * (ours.accuracy - base_acc), ours_sps / plain_sps
    print(f"\naccuracy vs baseline: {gain:+.2f} points (target ≥ +1.50) {'PASS' if gain >= 1.5 else 'FAIL'}")
    print(f"throughput vs plain BiLSTM: {speed:.2f}× (target ≥ 2×) {'PASS' if speed >= 2 else 'FAIL'}")


if __name__ == "__main__":
    main()
