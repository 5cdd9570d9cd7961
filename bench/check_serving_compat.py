"""Do our exports load in an older TensorFlow, as older TF Serving releases and loaders would?

    python -m venv /tmp/tf220 && /tmp/tf220/bin/pip install tensorflow==2.20.0 'tensorflow-text==2.20.*'
    python bench/check_serving_compat.py --python /tmp/tf220/bin/python     # about 3 minutes

Builds each export kind with this environment's TensorFlow — an LSTM (`train` on 600 bundled
reviews) and a BERT (`pretrain --epochs 0` vocabulary + small model, then `train --model bert`) —
scores raw texts with ``serving_default`` and tokenizes them with ``tokenize`` here, then loads the
same directory with the other interpreter's TensorFlow + tensorflow-text (what that TF Serving release
bundles) and compares the probabilities and the tokens (jieba's in the LSTM, word pieces in BERT). Not a CI test: the second environment is ≈2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_SCORE = """
import json, sys
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401
texts = json.load(open(sys.argv[2], encoding="utf-8"))
sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
probs = sig(text=tf.constant(texts))["probabilities"].numpy()
tokens = tf.saved_model.load(sys.argv[1]).signatures["tokenize"](text=tf.constant(texts))
tokens = {k: [[x.decode() if isinstance(x, bytes) else int(x) for x in row] for row in v.numpy().reshape(len(texts), -1)]
          for k, v in tokens.items()}
print(json.dumps({"tensorflow": tf.__version__, "tensorflow_text": tensorflow_text.__version__,
                  "probabilities": probs.tolist(), "tokens": tokens}, ensure_ascii=False))
"""


def run(cmd: list[str], cwd: Path, python: str = sys.executable) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([python, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return "FAILED: " + (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return proc.stdout


def build_exports(work: Path) -> dict[str, Path]:
    import pandas as pd

    pd.read_csv(REPO / "data" / "reviews.csv").sample(600, random_state=0).to_csv(work / "small.csv", index=False)
    common = ["--data", "small.csv", "--epochs", "1", "--batch-size", "32"]
    for out in (run(["-m", "sentiment_tf.train", *common, "--output", "lstm", "--run-dir", "run-lstm"], work),
                run(["-m", "sentiment_tf.pretrain", "--corpus", "small.csv", "--epochs", "0", "--hidden-size", "64",
                     "--layers", "2", "--heads", "2", "--intermediate-size", "128", "--vocab-size", "2000",
                     "--output", "bert_ckpt", "--run-dir", "run-pre"], work),
                run(["-m", "sentiment_tf.train", *common, "--model", "bert", "--pretrained", "bert_ckpt",
                     "--max-length", "64", "--output", "bert", "--run-dir", "run-bert"], work)):
        if out.startswith("FAILED"):
            raise SystemExit(out)
    return {"lstm": work / "lstm" / "1", "bert": work / "bert" / "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="interpreter of the venv with the older TensorFlow")
    parser.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args()
    if not Path(args.python).is_file():
        raise SystemExit(f"error: --python {args.python}: not found (create the venv first, see --help)")

    import numpy as np
    import pandas as pd

    texts = pd.read_csv(REPO / "data" / "reviews.csv")["text"].tail(2000).tolist()
    texts += ["", "ＡＢＣ 好评！😀 http://x.cn", "I LOVE iPhone15 Pro Max!!! 太棒了", "Ünïcödé ÇAFÉ straße",
              "iPhone13 3.14元 95% C++", "工信处女干事每月经过下属科室", "长" * 300]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        for kind, version in build_exports(work).items():
            here = json.loads(run(["-c", _SCORE, str(version), str(work / "texts.json")], work).splitlines()[-1])
            out = run(["-c", _SCORE, str(version), str(work / "texts.json")], work, python=args.python)
            if out.startswith("FAILED"):
                rows.append((kind, here, None, out))
                continue
            there = json.loads(out.splitlines()[-1])
            err = float(np.abs(np.array(there["probabilities"]) - np.array(here["probabilities"])).max())
            same = there["tokens"] == here["tokens"]
            rows.append((kind, here, there, f"max abs Δp = {err:.1e}, tokens {'identical' if same else 'DIFFER'} "
                                            f"{'PASS' if err <= args.atol and same else 'FAIL'}"))

    print(f"\n{len(texts)} raw texts through serving_default\n")
    print("| export | written and scored with | loaded and scored with | result |")
    print("|---|---|---|---|")
    for kind, here, there, result in rows:
        old = f"TF {there['tensorflow']} + text {there['tensorflow_text']}" if there else args.python
        print(f"| {kind} | TF {here['tensorflow']} + text {here['tensorflow_text']} | {old} | {result} |")


if __name__ == "__main__":
    main()
