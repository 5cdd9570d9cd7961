"""BERT export footprint for a bert-base-sized model: bytes on disk, load time and the memory of a
process that loads it, for the export as `train --model bert` writes it now and as it was written
before (the compiled model with its optimizer slots, plus `assets.extra/hf_model/tf_model.h5`).

    python bench/bench_export_size.py            # about 3 minutes on 2 CPU cores, ≈2 GB of disk

The model is built in code (12 layers, hidden 768, 21,128-token vocabulary like bert-base-chinese;
random weights, nothing downloaded) and trained for one step, so Adam's slots exist as they do after
any fine-tuning. Load time and peak RSS are measured in a fresh process per export (the median of
``--repeats`` loads), as a server replica would load it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_LOAD = """
import json, resource, sys, time
t0 = time.perf_counter()
import tensorflow as tf, tensorflow_text  # noqa: F401
t1 = time.perf_counter()
tf.saved_model.load(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"load_s": t2 - t1, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_trained(tmp: Path):
    import numpy as np
    import tf_keras
    from transformers import BertConfig, BertTokenizerFast, TFBertForSequenceClassification

    from sentiment_tf.models.bert.classifier import TrainedBert
    from sentiment_tf.models.bert.preprocessor import Preprocessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 21128 - len(specials))]
    (tmp / "vocab.txt").write_text("\n".join(specials + chars) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"), do_lower_case=False)
    cfg = BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, max_position_embeddings=512, num_labels=2,
                     id2label={0: "正面", 1: "负面"}, label2id={"正面": 0, "负面": 1})
    tf_keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification(cfg)
    model.compile(optimizer=tf_keras.optimizers.Adam(2e-5),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(0).integers(5, 21128, size=(4, 16))
    model.fit({"input_ids": ids, "attention_mask": np.ones_like(ids)}, np.array([0, 1, 0, 1]), batch_size=4,
              verbose=0)
    return TrainedBert(model, Preprocessor(tok, 64), ["正面", "负面"], {})


def export_before(trained, base: Path) -> Path:
    """The export as the code before this change wrote it: the compiled model itself (optimizer
    tracked) in the SavedModel, and the weights again in ``hf_model/tf_model.h5``."""
    import tensorflow as tf

    from sentiment_tf.models.bert import classifier as bert

    version = base / "1"
    tok = trained.preprocessor.tokenizer
    hf_dir = version / "assets.extra" / bert.HF_DIR
    trained.model.save_pretrained(str(hf_dir))
    tok.save_pretrained(str(hf_dir))
    module = bert.BertServing(trained.model, str(hf_dir / bert.VOCAB_FILE), trained.labels, trained.preprocessor)
    module.model = trained.model  # tracked, as before: its optimizer and tf-keras' layer traces come along
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve, "encoded": module.encoded,
                                                          "tokenize": module.tokenize})
    return version


def measure(version: Path, repeats: int) -> dict:
    import tensorflow as tf

    files = [p for p in version.rglob("*") if p.is_file()]
    variables = tf.train.list_variables(str(version / "variables" / "variables"))
    loads = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", _LOAD, str(version)], capture_output=True, text=True,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"loading {version} failed:\n{proc.stderr[-2000:]}")
        loads.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    loads.sort(key=lambda r: r["load_s"])
    mid = loads[len(loads) // 2]
    return {"bytes": sum(p.stat().st_size for p in files),
            "h5_bytes": sum(p.stat().st_size for p in files if p.suffix == ".h5"),
            "optimizer_variables": sum("optimizer" in name.lower() for name, _ in variables),
            "load_s": mid["load_s"], "peak_rss_mb": mid["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process loads per export (median)")
    args = parser.parse_args()

    import numpy as np

    with tempfile.TemporaryDirectory(dir=REPO / "saved_models") as tmp:
        tmp = Path(tmp)
        trained = build_trained(tmp)
        params = int(sum(np.prod(w.shape) for w in trained.model.weights))
        weight_mb = 4 * params / 2**20
        before = measure(export_before(trained, tmp / "before"), args.repeats)
        after = measure(trained.export(tmp / "after", {"ModelConfig": {}}, {}, ["这家酒店很干净", "太差了"]),
                        args.repeats)

    print(f"\nbert-base-sized model: {params / 1e6:.1f} M parameters = {weight_mb:.0f} MB of float32 weights\n")
    print("| export | on disk (MB) | × weights | tf_model.h5 (MB) | optimizer variables | load (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("before", before), ("now", after)):
        print(f"| {name} | {r['bytes'] / 2**20:.0f} | {r['bytes'] / 2**20 / weight_mb:.2f} | "
              f"{r['h5_bytes'] / 2**20:.0f} | {r['optimizer_variables']} | {r['load_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    ratio = after["bytes"] / 2**20 / weight_mb
    print(f"\nsize ≤ 1.15 × weights: {ratio:.3f} {'PASS' if ratio <= 1.15 else 'FAIL'}; "
          f"no optimizer state: {'PASS' if after['optimizer_variables'] == 0 else 'FAIL'}")


if __name__ == "__main__":
    main()
