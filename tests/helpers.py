"""Helpers the test modules share: running a command as a user does, the tiny-model flags, a served
export in a fresh process, the local service in a subprocess, and texts built to hit edge cases."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "data" / "reviews.csv"


def cli(module: str, *args: str, cwd: Path, timeout: int = 300, process: bool = False) -> subprocess.CompletedProcess:
    """Runs command ``module`` with ``args`` in ``cwd`` as ``python -m sentiment_tf.<module>`` would: its
    ``cli()`` path (``run_cli``: one-line errors, exit codes), its stdout, its stderr and its log lines.

    In this process by default: a fresh interpreter costs seconds of TensorFlow start-up per call.
    ``process=True`` starts a real one, for what only a process shows (its exit status, native logs)."""
    if process:
        # TF_CPP_MIN_LOG_LEVEL unset, as for a user: the commands quiet TensorFlow's C++ logs themselves.
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        env.update(PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
        return subprocess.run([sys.executable, "-m", f"sentiment_tf.{module}", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    from sentiment_tf.core.errors import run_cli

    command = importlib.import_module(f"sentiment_tf.{module}")
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root, level, here = logging.getLogger(), logging.getLogger().level, os.getcwd()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if "--verbose" in args else logging.INFO)
    code: int | str | None = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(command.main, [str(a) for a in args])
            except SystemExit as exit_:
                code = exit_.code
    finally:
        os.chdir(here)
        root.removeHandler(handler)
        root.setLevel(level)
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        err.write(code + "\n")
        code = 1
    return subprocess.CompletedProcess([module, *args], code or 0, out.getvalue(), err.getvalue())


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one ``error:`` line on stderr naming the problem, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


TINY_MODEL_ARGS = ["--epochs", "2", "--embedding-dim", "8", "--rnn-units", "4", "--batch-size", "32",
                   "--min-freq", "1", "--max-tokens", "40",
                   "--errors", "0"]  # the errors page (explain) has its own tests: test_explain.py


MIXED = ["<b>ＡＢＣ１２３</b>　很好！&#183; http://x.cn/a", "a\u200bb\x07c &amp;lt; &#65292;\u3000d\te\x85f",
         "Ünïcödé ÇAFÉ straße", "😀👍🏻 好评！！", "&#0;&#55296;&#99999999; &#x27;", "price:$100，￥２００",
         "", "   ", "I LOVE iPhone15 Pro Max!!! 太棒了", "\ufeff开头BOM", "tab\tand\nnewline\r\n",
         "ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ／ａ 网址", "&lt;script&gt;alert(1)&lt;/script&gt;好", "Ⅻ ① ㈱ ﬁ ㎏",
         "混合English和数字123以及emoji🎉的句子", "超长" * 200]


POOL = ("".join(chr(c) for c in range(0x21, 0x7F)) + "，。！？、；：“”‘’（）【】《》…—～·￥％＋－＝＜＞｜＾"
        "ÀÉÎÕÜßçñøåæœΣσςΑαДдЁё" + "ぁあいうえおアイウエオーガギ한국어ㄱㄴ" + "😀👍🏻🎉❤️✨🇨🇳"
        "\u0301\u0308\ufe0f\u200d\U000e0041\u00ad\u061c\u2060" + "𠀀𪜀𫝀𫠠𬺰丽" + "0123456789" + "好差很不错酒店服务")
EDGES = ["😀" * 30, "😀" * 120, "あ" * 40, "a" * 101, "a" * 100, "é" * 60, "[UNK] [SEP] [CLS] [MASK] [unused1]",
         "ΣΑΣ ΌΣΟΣ", "İstanbul", "ﬀ ẞ ǅ", "房间ＡＢＣ１２３，价格$199+税<=很好^_^|~", "超长" * 300,
         "这个宾馆比较陈旧了,特价的房间也很一般。总体来说一般 4.5分/5分 ThinkPad X1 Carbon！！！"]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) if rng.random() < 0.7 else " " for _ in range(rng.randint(1, 300)))
            for _ in range(n)] + EDGES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m sentiment_tf.serve` (or another serving ``module``, e.g. label) in a subprocess on 127.0.0.1."""

    def __init__(self, *args: str, cwd: Path, module: str = "serve", port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        self.log_path = cwd / f"server-{self.port}.log"
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", f"sentiment_tf.{module}", "--port", str(self.port), *args],
                                     cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("server did not start")

    def post(self, path: str, body) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False)
        return httpx.post(self.url + path, content=content, timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()

    def kill(self) -> None:
        """SIGKILL: nothing the process could still write."""
        self.proc.kill()
        self.proc.wait(timeout=20)
        self.log.close()


_LOAD_AND_RUN = """
import json, sys
import numpy as np, tensorflow as tf
try:
    import tensorflow_text  # registers the tokenizer ops of BERT exports
except ImportError:
    pass
sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = json.load(open(sys.argv[2], encoding="utf-8"))
out = sig(text=tf.constant(texts))
np.save(sys.argv[3], out["probabilities"].numpy())
assert not any(m.startswith("sentiment_tf") for m in sys.modules)
print(json.dumps([s.decode() for s in out["label"].numpy()], ensure_ascii=False))
"""


_LIST_OPS = """
import sys, json
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
sm = saved_model_pb2.SavedModel()
sm.ParseFromString(open(sys.argv[1] + "/saved_model.pb", "rb").read())
ops = set()
for mg in sm.meta_graphs:
    ops |= {n.op for n in mg.graph_def.node}
    for f in mg.graph_def.library.function:
        ops |= {n.op for n in f.node_def}
# tensorflow_text is NOT imported: any op unknown here is not core TensorFlow.
print(json.dumps({"all": sorted(ops), "non_core": sorted(o for o in ops if op_def_registry.get(o) is None)}))
"""


def saved_model_ops(version_dir: Path) -> dict[str, list[str]]:
    """The ops in an export's graphs, all of them and those core TensorFlow lacks (read in a process
    that does not import tensorflow_text)."""
    proc = subprocess.run([sys.executable, "-c", _LIST_OPS, str(version_dir)], capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# What stock TF Serving links of tensorflow-text.
ALLOWED_TEXT_OPS = {"RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets", "CaseFoldUTF8", "NormalizeUTF8"}


def serve_in_fresh_process(export_dir: Path, inputs: list[str], tmp: Path) -> tuple[np.ndarray, list[str]]:
    """Loads an export in a new Python process that never imports sentiment_tf and runs its
    ``serving_default`` on ``inputs``."""
    texts, probs = tmp / "texts.json", tmp / "probs.npy"
    texts.write_text(json.dumps(inputs, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(export_dir), str(texts), str(probs)],
                          capture_output=True, text=True, cwd=tmp, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(probs), json.loads(proc.stdout.strip().splitlines()[-1])


def assert_export_matches(model, preprocessor, export_dir: Path, texts: list[str], labels: list[str],
                          tmp: Path, atol: float = 1e-5) -> None:
    """The SavedModel, loaded in a fresh process, gives the Keras model's probabilities and labels for
    raw ``texts`` (the Keras model reading them through the Python tokenizer)."""
    from sentiment_tf.models.lstm import classifier as lstm

    expected = lstm.predict_proba(model, preprocessor, preprocessor.segment(texts, cleaned=False))
    got, names = serve_in_fresh_process(export_dir, texts, tmp)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    assert names == [labels[i] for i in expected.argmax(-1)]


def assert_training_resumes(callbacks_module, args: list[str], run: Path, out: Path, monkeypatch,
                            crash_after: int = 1, atol: float = 1e-4) -> None:
    """A run of `train.main(args)` that crashes after epoch ``crash_after`` and is then resumed with
    `--resume run` equals the uninterrupted run: the same losses and metrics per epoch (within
    ``atol``), the same history length, the same restored best epoch (so the same test accuracy);
    its backup is removed and a second `--resume` is refused.

    ``callbacks_module`` is the Keras flavour's callbacks (keras.callbacks or tf_keras.callbacks).
    """
    import pytest

    from sentiment_tf import train
    from sentiment_tf.core.errors import UserError
    from sentiment_tf.models import training

    ref_run, ref_out = run.parent / f"{run.name}-uninterrupted", out.parent / f"{out.name}-uninterrupted"
    swap = {str(run): str(ref_run), str(out): str(ref_out)}
    assert train.main([swap.get(a, a) for a in args]) == 0
    reference = json.loads((ref_run / "report.json").read_text(encoding="utf-8"))
    if crash_after == -1:  # the epoch early stopping ended the run at: nothing is left to train
        crash_after = len(reference["history"]["loss"])
        assert crash_after < int(args[len(args) - 1 - args[::-1].index("--epochs") + 1]), "it must stop early"

    class Crash(Exception):
        pass

    class CrashAfter(callbacks_module.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == crash_after:
                raise Crash("power cut")

    original = training.standard_callbacks
    # The crash comes after the backup of that epoch was saved (callbacks run in order).
    monkeypatch.setattr(training, "standard_callbacks", lambda *a, **k: original(*a, **k) + [CrashAfter()])
    with pytest.raises(Crash):
        train.main(args)
    assert (run / "backup").is_dir() and not out.exists()

    monkeypatch.setattr(training, "standard_callbacks", original)
    assert train.main(["--resume", str(run)]) == 0
    resumed = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert resumed["history"].keys() == reference["history"].keys()
    for key, values in reference["history"].items():
        np.testing.assert_allclose(resumed["history"][key], values, atol=atol, rtol=0, err_msg=key)
    assert resumed["accuracy"] == reference["accuracy"]  # the same best epoch restored
    assert (out / "1").is_dir() and not (run / "backup").exists()
    with pytest.raises(UserError, match="already finished"):
        train.main(["--resume", str(run)])


def pytorch_state(tf_dir: Path) -> dict[str, np.ndarray]:
    """A TF checkpoint's weights as ``BertForSequenceClassification`` saves them (PyTorch names and
    layout), made without torch."""
    from transformers import TFBertForSequenceClassification
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    model = TFBertForSequenceClassification.from_pretrained(str(tf_dir))
    state = {}
    for w in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
        value = w.numpy()
        state[name] = np.ascontiguousarray(value.T if transpose.name == "SIMPLE" else value)
    return state


_TORCH_STORAGES = {"float32": "FloatStorage", "float16": "HalfStorage", "float64": "DoubleStorage",
                   "int64": "LongStorage", "bfloat16": "BFloat16Storage"}


def write_torch_save(state: dict[str, np.ndarray], path: Path, bfloat16: bool = False) -> None:
    """``torch.save(state_dict, path)`` without torch: the zip archive (``archive/data.pkl`` + one raw
    storage per tensor) with the pickle opcodes torch writes, so readers can be tested here. With
    ``bfloat16``, float32 tensors are stored as bfloat16 (truncated)."""
    import struct
    import zipfile

    def text(s: str) -> bytes:
        raw = s.encode("utf-8")
        return b"X" + struct.pack("<I", len(raw)) + raw

    def integer(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    def ints(values) -> bytes:
        return b"(" + b"".join(integer(int(v)) for v in values) + b"t"

    ordered_dict = b"ccollections\nOrderedDict\n)R"
    body, storages = [b"\x80\x02", ordered_dict, b"("], {}
    for i, (name, value) in enumerate(state.items()):
        value = np.ascontiguousarray(value)
        kind = "bfloat16" if bfloat16 and value.dtype == np.float32 else value.dtype.name
        storages[str(i)] = ((value.view(np.uint32) >> 16).astype("<u2").tobytes() if kind == "bfloat16"
                            else value.astype(value.dtype.newbyteorder("<")).tobytes())
        strides = [s // value.dtype.itemsize for s in value.strides]
        storage = (b"(" + text("storage") + f"ctorch\n{_TORCH_STORAGES[kind]}\n".encode() + text(str(i)) + text("cpu")
                   + integer(value.size) + b"tQ")
        body += [text(name), b"ctorch._utils\n_rebuild_tensor_v2\n(", storage, integer(0), ints(value.shape),
                 ints(strides), b"\x89", ordered_dict, b"tR"]
    body += [b"u."]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"".join(body))
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/version", "3\n")
