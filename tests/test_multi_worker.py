"""Multi-worker training: two `train` processes on 127.0.0.1 joined by TF_CONFIG under
MultiWorkerMirroredStrategy, against one process training on the same global batch."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

# Dropout 0: each replica draws its own dropout masks, so only without dropout is the result the
# single-process one.
ARGS = ["--text-col", "review", "--label-col", "sentiment", "--epochs", "3", "--patience", "3",
        "--embedding-dim", "8", "--rnn-units", "4", "--batch-size", "32", "--min-freq", "1", "--max-tokens", "40",
        "--dropout", "0", "--no-calibration", "--errors", "0"]
PROBE = ["这家酒店很干净，服务也好", "太差了，再也不来", "还行吧", "物流很快，包装完好", "屏幕有坏点，客服不理人"]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args: list[str], cwd: Path, n: int = 2) -> list[subprocess.Popen]:
    hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
    procs = []
    for index in range(n):
        env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        log = open(cwd / f"worker{index}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "sentiment_tf.train", *args], cwd=cwd, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, text=True))
    return procs


def wait_all(procs: list[subprocess.Popen], cwd: Path, timeout: float = 240) -> list[str]:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    return [(cwd / f"worker{i}.log").read_text() for i in range(len(procs))]


def digests(logs: list[str]) -> list[str]:
    return [re.search(r"trained weights sha256 (\w+)", log).group(1) for log in logs]


def probabilities(model_dir: Path) -> np.ndarray:
    from sentiment_tf.serving.predictor import Predictor

    return Predictor.load(model_dir).predict(PROBE).probabilities


@pytest.fixture(scope="module")
def data(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    pos = reviews[reviews.label == "正面"].text.head(150).tolist()
    neg = reviews[reviews.label == "负面"].text.head(150).tolist()
    path = tmp_path_factory.mktemp("mw") / "reviews.csv"
    pd.DataFrame({"review": pos + neg, "sentiment": ["正面"] * 150 + ["负面"] * 150}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def single_process(data: Path, tmp_path_factory) -> np.ndarray:
    """The reference: one process, no TF_CONFIG, the same global batch."""
    work = tmp_path_factory.mktemp("single")
    proc = cli("train", "--data", str(data), *ARGS, "--run-dir", "run", "--output", "models", cwd=work,
               process=True)  # as the workers run: one process each
    assert proc.returncode == 0, proc.stderr[-3000:]
    return probabilities(work / "models")


@pytest.fixture(scope="module")
def two_workers(data: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    work = tmp_path_factory.mktemp("two")
    args = ["--data", str(data), *ARGS, "--run-dir", "run", "--output", "models"]
    return work, wait_all(start_workers(args, work), work)


def test_two_workers_train_one_model_equal_to_one_process(two_workers: tuple[Path, list[str]],
                                                          single_process: np.ndarray) -> None:
    work, logs = two_workers
    assert "worker 1 done; the chief writes the report and the export" in logs[1], logs[1][-3000:]
    assert "exported: models/1" in logs[0], logs[0][-3000:]
    first, second = digests(logs)
    assert first == second  # the replicas' weights are bit for bit the same
    assert sorted(p.name for p in (work / "models").iterdir()) == ["1"]  # one export, the chief's
    run = work / "run"
    assert (run / "report.json").is_file() and not list(run.glob("workertemp_*"))
    np.testing.assert_allclose(probabilities(work / "models"), single_process, atol=1e-5)


def test_killed_worker_then_resume_gives_the_uninterrupted_result(data: Path, two_workers: tuple[Path, list[str]],
                                                                  single_process: np.ndarray, tmp_path: Path) -> None:
    args = ["--data", str(data), *ARGS, "--run-dir", "run", "--output", "models"]
    procs = start_workers(args, tmp_path)
    state = tmp_path / "run" / "workertemp_worker1" / "backup" / "run_state.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and procs[1].poll() is None:
        if state.is_file() and json.loads(state.read_text())["epochs"] >= 1:
            break
        time.sleep(0.2)
    assert procs[1].poll() is None, (tmp_path / "worker1.log").read_text()[-3000:]
    procs[1].send_signal(signal.SIGKILL)
    wait_all(procs, tmp_path, timeout=180)  # the chief's next collective fails: it stops too
    assert procs[0].returncode != 0 and not (tmp_path / "models").exists()

    logs = wait_all(start_workers(["--resume", "run"], tmp_path), tmp_path)
    assert all("resumed after epoch" in log for log in logs), logs[0][-3000:]
    assert digests(logs) == digests(two_workers[1])  # bit for bit the uninterrupted run
    np.testing.assert_allclose(probabilities(tmp_path / "models"), single_process, atol=1e-5)


_TWO_REPLICAS = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from sentiment_tf.models import training
from sentiment_tf.models.lstm import language_model as lstm_lm

shape = lstm_lm.LMShape(vocab_size=30, embedding_dim=4, rnn_units=4, dropout=0.0)
ids = np.random.default_rng(0).integers(2, 30, size=(8, 6))  # equal lengths: equal token shares

def step(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = lstm_lm.build(shape)
        model.compile(optimizer=keras.optimizers.SGD(0.5))  # plain SGD: the update is the gradient
    before = model.get_weights()
    model.fit(tf.data.Dataset.from_tensor_slices(ids).batch(8), epochs=1, verbose=0)
    one = tf.data.Dataset.from_tensor_slices(ids[:1]).batch(8)  # one replica's share is empty
    held = model.evaluate(one, verbose=0, return_dict=True)["loss"]
    return [a - b for a, b in zip(model.get_weights(), before)], held

one_device, held_one = step(tf.distribute.OneDeviceStrategy("/cpu:0"))
two, held_two = step(training.keras_strategy(tf, "MirroredStrategy")(["/cpu:0", "/cpu:1"]))
print(json.dumps({"diff": max(float(np.abs(a - b).max()) for a, b in zip(one_device, two)),
                  "largest": max(float(np.abs(a).max()) for a in one_device), "held": [held_one, held_two]}))
"""


def test_language_model_steps_alike_on_two_replicas() -> None:
    """The LSTM LM's own train_step under a 2-replica strategy makes the one-device update (each replica
    contributes its share of the loss; the sum was 2× before), and a held-out set smaller than the
    replicas has a finite loss (an empty share gave NaN)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["largest"] > 1e-2 and result["diff"] < 1e-6, result
    held_one, held_two = result["held"]
    assert np.isfinite(held_two) and abs(held_one - held_two) < 1e-5


def test_cluster_settings_are_checked_before_any_work(data: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    try:
        os.environ["TF_CONFIG"] = "{not json"
        # TF_CONFIG is read once per process, as TensorFlow does: each case is a process of its own
        assert_user_error(cli("train", "--data", str(data), *ARGS, cwd=tmp_path, process=True),
                          "TF_CONFIG is not valid JSON")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                              "task": {"type": "worker", "index": 0}})
        assert_user_error(cli("train", "--data", str(data), *ARGS, cwd=tmp_path, process=True), "the same --run-dir")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]},
                                              "task": {"type": "worker", "index": 0}})
        assert_user_error(cli("train", "--data", str(data), *ARGS, "--run-dir", "r", cwd=tmp_path, process=True), "'ps'")
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()


def test_kubernetes_manifest_gives_each_pod_its_tf_config_and_resumes(tmp_path: Path) -> None:
    """The Job's start script, run as pod 1 of 3 with a stand-in `python`: a TF_CONFIG that names
    every pod through the headless Service, a new run first, and --resume once the pod's run exists."""
    import yaml

    from sentiment_tf.models import training

    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "train-multiworker.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["WORKERS"]) == job["spec"]["completions"] == job["spec"]["parallelism"]

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$TF_CONFIG" "$*" > "$CALLED"\n')
    (fake / "python").chmod(0o755)
    run = tmp_path / "run"

    def start_pod() -> tuple[dict, str]:
        called = tmp_path / "called.txt"
        proc = subprocess.run([*container["command"], container["args"][0]], capture_output=True, text=True,
                              env={"PATH": f"{fake}:/usr/bin:/bin", "CALLED": str(called), **env,
                                   "WORKERS": "3", "RUN_DIR": str(run), "JOB_COMPLETION_INDEX": "1"})
        assert proc.returncode == 0, proc.stderr
        tf_config, argv = called.read_text().splitlines()
        return json.loads(tf_config), argv

    tf_config, argv = start_pod()
    assert tf_config == {"cluster": {"worker": [f"sentiment-train-{i}.sentiment-train:12345" for i in range(3)]},
                         "task": {"type": "worker", "index": 1}}
    assert argv.startswith("-m sentiment_tf.train --data ") and argv.endswith(f"--run-dir {run}")
    saved = dict(os.environ)
    try:
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        training.role.cache_clear()
        assert training.role() == training.Role(workers=3, task_type="worker", task_id=1)
        own = training.role().local(run)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        training.role.cache_clear()
    own.mkdir(parents=True)
    (own / "config.json").write_text("{}")
    assert start_pod()[1] == f"-m sentiment_tf.train --resume {run}"
