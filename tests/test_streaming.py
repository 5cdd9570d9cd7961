"""Files bigger than memory: `predict --input` reads, predicts and writes in chunks, resumes after a
kill to the same file an uninterrupted run writes, and scores a million rows in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO, TINY_MODEL_ARGS

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def char_model(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    from sentiment_tf import train

    work = tmp_path_factory.mktemp("stream")
    reviews.sample(600, random_state=1).to_csv(work / "small.csv", index=False)
    assert train.main(["--data", str(work / "small.csv"), "--output", str(work / "model"), "--run-dir",
                       str(work / "run"), "--tokenizer", "char", "--errors", "0", *TINY_MODEL_ARGS]) == 0
    return work / "model"


def test_chunked_prediction_equals_one_pass_and_resumes_after_a_kill(char_model, reviews, tmp_path, monkeypatch):
    from sentiment_tf import predict
    from sentiment_tf.serving.predictor import Predictor

    frame = reviews.head(230).assign(id=range(230))[["id", "text", "label"]]
    frame.to_csv(tmp_path / "in.csv", index=False)
    args = ["--model", str(char_model), "--input", str(tmp_path / "in.csv")]
    assert predict.main([*args, "--output", str(tmp_path / "whole.csv"), "--chunk-size", "1000"]) == 0
    assert predict.main([*args, "--output", str(tmp_path / "chunked.csv"), "--chunk-size", "50"]) == 0
    chunked = (tmp_path / "chunked.csv").read_bytes()
    a, b = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "chunked.csv")
    pd.testing.assert_frame_equal(a, b, atol=2e-6, check_exact=False)  # padding per batch differs: float noise
    out = pd.read_csv(tmp_path / "whole.csv")
    assert out["id"].tolist() == list(range(230)) and list(out.columns[:3]) == ["id", "text", "label"]
    assert (tmp_path / "whole.csv").stat().st_mode & 0o777 == 0o644

    calls = {"n": 0}
    real = Predictor.predict

    def dies_on_the_third_chunk(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Predictor, "predict", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict.main([*args, "--output", str(tmp_path / "resumed.csv"), "--chunk-size", "50"])
    assert not (tmp_path / "resumed.csv").exists()
    partial = tmp_path / "resumed.csv.partial"
    with open(partial, "ab") as f:
        f.write(b"half a row, as a kill mid-write leaves it")
    seen = []
    monkeypatch.setattr(Predictor, "predict", lambda self, texts, **kw: seen.append(len(texts)) or real(self, texts, **kw))
    assert predict.main([*args, "--output", str(tmp_path / "resumed.csv"), "--chunk-size", "50"]) == 0
    assert seen == [50, 50, 30]  # the two written chunks are not predicted again
    assert (tmp_path / "resumed.csv").read_bytes() == chunked
    assert not partial.exists() and not (tmp_path / "resumed.csv.partial.json").exists()


def test_a_different_job_does_not_resume_a_partial_file(char_model, reviews, tmp_path):
    from sentiment_tf import predict
    from sentiment_tf.data.streaming import ResumableCsv, job_description

    reviews.head(120)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    writer = ResumableCsv(tmp_path / "out.csv", job_description(tmp_path / "in.csv", model="other"), bom=False)
    writer.append(pd.DataFrame({"text": ["stale"], "pred_label": ["x"]}))
    assert predict.main(["--model", str(char_model), "--input", str(tmp_path / "in.csv"), "--output",
                         str(tmp_path / "out.csv"), "--chunk-size", "40"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 120 and "stale" not in set(out["text"])


_PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(proc.stderr[-3000:])
"""


@pytest.mark.slow
def test_a_million_rows_in_bounded_memory(char_model, tmp_path):
    rows = 1_000_000
    with open(tmp_path / "big.csv", "w", encoding="utf-8") as f:
        f.write("id,text\n")
        for i in range(rows):
            f.write(f"{i},{'好评' if i % 3 else '太差了'}{i % 97}\n")
    env_cmd = [sys.executable, "-m", "sentiment_tf.predict", "--model", str(char_model), "--input",
               str(tmp_path / "big.csv"), "--output", str(tmp_path / "preds.csv"), "--batch-size", "2048",
               "--chunk-size", "100000"]
    proc = subprocess.run([sys.executable, "-c", _PEAK, *env_cmd], capture_output=True, text=True, timeout=900,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin",
                                         "TF_CPP_MIN_LOG_LEVEL": "3"})
    code, peak_kb = map(int, proc.stdout.split())
    assert code == 0, proc.stderr
    assert peak_kb < 1.5 * 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"
    with open(tmp_path / "preds.csv", encoding="utf-8") as f:
        assert sum(1 for _ in f) == rows + 1
    tail = pd.read_csv(tmp_path / "preds.csv", skiprows=range(1, rows - 2))
    assert tail["id"].tolist() == [rows - 3, rows - 2, rows - 1] and tail["pred_label"].notna().all()
