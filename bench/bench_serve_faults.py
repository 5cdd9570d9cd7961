"""The fault probe of issue #30 against `python -m sentiment_tf.serve` on loopback, with PASS/FAIL.

    python bench/bench_serve_faults.py                         # trains the default LSTM first (~1 min)
    python bench/bench_serve_faults.py --model saved_models/lstm

Each row is one attack or failure a production server meets, and the figure that says it held:
300 idle sockets, a 5,000-digit integer, clients hanging up mid-body, large requests beside small
ones, a 4 MB body of 1.3 M JSON objects, a busy port, a version directory, SIGTERM with heavy requests
in flight (default and 3 s --shutdown-timeout). Every request goes to 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import pandas as pd  # noqa: E402

from sentiment_tf.export.versions import resolve_version_dir  # noqa: E402

ROWS: list[tuple[str, str, str, bool]] = []


def row(what: str, measured: str, target: str, ok: bool) -> None:
    ROWS.append((what, measured, target, ok))
    print(f"{'PASS' if ok else 'FAIL'}  {what}: {measured}  (target: {target})", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model: Path, *options: str, log: Path):
        self.port = free_port()
        self.name = resolve_version_dir(model).parent.name
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "sentiment_tf.serve", "--model", str(model), "--port",
                                      str(self.port), *options], cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: see {log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit("the server did not start")

    def post(self, path: str, body, timeout: float = 120) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.post(self.url + path, content=body, timeout=timeout)
        return httpx.post(self.url + path, json=body, timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def texts_of(corpus: str, n: int, chars: int, seed: int) -> list[str]:
    return [corpus[(seed * 7919 + i * 997) % (len(corpus) - chars):][:chars] for i in range(n)]


def probe_running(srv: Served, corpus: str) -> None:
    # 1. Idle sockets: they held uvicorn's connection-counting --limit-concurrency 256.
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(300)]
    codes = Counter(httpx.get(srv.url + "/healthz").status_code for _ in range(50))
    codes += Counter(srv.post("/predict", {"texts": ["这家酒店很干净"]}).status_code for _ in range(50))
    for s in idle:
        s.close()
    row("300 idle sockets, then 50 /healthz + 50 /predict", str(dict(codes)), "all 200", set(codes) == {200})

    # 2. Integers Python refuses to convert.
    big_int = b"1" * 5000
    codes = [srv.post("/predict", b'{"texts": [' + big_int + b"]}").status_code,
             srv.post(f"/v1/models/{srv.name}:predict", b'{"instances": ["a"], "x": ' + big_int + b"}").status_code]
    row("5,000-digit integer (/predict, TF Serving route)", str(codes), "400, 400", codes == [400, 400])

    # 3. Clients hanging up mid-body.
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"texts\"")
        time.sleep(0.05)
        s.close()
    time.sleep(0.5)
    lines = [line for line in httpx.get(srv.url + "/metrics").text.splitlines()
             if line.startswith("sentiment_tf_http_requests_total")]
    fives = [line for line in lines if 'status="5' in line]
    hangups = sum(float(line.split()[-1]) for line in lines if 'status="499"' in line)
    row("10 clients hang up mid-body", f"{hangups:.0f} counted as 499, {len(fives)} 5xx series", "no 5xx",
        not fives and hangups == 10)

    # 4. Large requests beside small ones.
    big = {"texts": texts_of(corpus, 256, 5000, 1)}
    t = time.perf_counter()
    srv.post("/predict", big)
    alone = time.perf_counter() - t
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(srv.post, "/predict", big) for _ in range(3)]
        time.sleep(0.5)
        waits = []
        for _ in range(10):
            t = time.perf_counter()
            srv.post("/predict", {"texts": ["好评！！！", "太差了"]})
            waits.append(time.perf_counter() - t)
            time.sleep(0.2)
        big_codes = [f.result().status_code for f in futures]
    row(f"2-text request while 3 × 256 × 5,000-char requests run (one alone: {alone:.2f} s)",
        f"p50 {statistics.median(waits) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms; large: {big_codes}",
        "max ≤ 1 s", max(waits) <= 1.0 and big_codes == [200] * 3)

    # 5. A 4 MB body of 1.3 M JSON objects: parsed on the event loop, it stalled every other client. It is
    # sent by another process: in this one its upload would hold the GIL the timing needs.
    sender = subprocess.Popen([sys.executable, "-c", SEND_BIG_BODY, srv.url], stdout=subprocess.PIPE, text=True)
    health = []
    while sender.poll() is None and len(health) < 10_000:
        t = time.perf_counter()
        httpx.get(srv.url + "/healthz")
        health.append(time.perf_counter() - t)
    code = int(sender.communicate(timeout=120)[0].strip() or 0)
    row("/healthz while a 4 MB body of 1.3 M objects is sent and parsed", f"max {max(health) * 1000:.0f} ms "
        f"over {len(health)} calls; the body: {code}", "≤ 100 ms; a 4xx", max(health) <= 0.1 and 400 <= code < 500)


SEND_BIG_BODY = """
import sys, httpx
body = b'{"texts": [' + b"{}," * 1_300_000 + b"{}]}"
print(httpx.post(sys.argv[1] + "/predict", content=body, timeout=120).status_code)
"""


def probe_port_and_pin(srv: Served, model: Path, work: Path) -> None:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sentiment_tf.serve", "--model", str(model), "--port", str(srv.port)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t
    lines = proc.stderr.strip().splitlines()
    row("busy port", f"exit {proc.returncode} after {took:.2f} s, {len(lines)} line(s)", "exit 2 in < 5 s, one line",
        proc.returncode == 2 and took < 5 and len(lines) == 1)

    base = work / "pinned" / "m"
    source = resolve_version_dir(model)
    shutil.copytree(source, base / "1")
    shutil.copytree(source, base / "2")
    pinned = Served(base / "1", "--poll-seconds", "0.5", log=work / "pinned.log")
    try:
        served = pinned.post("/predict", {"texts": ["好"]}).json()["version"]
        listed = [e["version"] for e in httpx.get(pinned.url + "/v1/models/m").json()["model_version_status"]]
        shutil.rmtree(base / "1")
        time.sleep(1.5)
        after = pinned.post("/predict", {"texts": ["好"]}).status_code
    finally:
        pinned.stop()
    row("--model m/1 beside m/2", f"served version {served}, status lists {listed}; 1 deleted → {after}",
        "version 1 only; 503 once it is gone", served == 1 and listed == ["1"] and after == 503)


def probe_sigterm(model: Path, corpus: str, work: Path, timeout: float | None) -> None:
    options = [] if timeout is None else ["--shutdown-timeout", str(timeout)]
    srv = Served(model, *options, log=work / f"sigterm-{timeout}.log")
    bodies = [{"texts": texts_of(corpus, 256, 2000, seed)} for seed in range(20)]

    def post(body):
        try:
            r = srv.post("/predict", body)
            return r.status_code
        except httpx.HTTPError as err:
            return type(err).__name__

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(post, b) for b in bodies]
        time.sleep(1.5)
        t = time.perf_counter()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(60)
        took = time.perf_counter() - t
        answers = Counter(f.result() for f in futures)
    limit = 10.0 if timeout is None else timeout
    row(f"SIGTERM, 20 requests of 256 × 2,000 chars in flight, --shutdown-timeout {limit:g}",
        f"exit {code} after {took:.2f} s; answers {dict(answers)}", f"exit 0 within {limit + 1:g} s, no 500",
        code == 0 and took <= limit + 1 and set(answers) <= {200, 503})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="An export (default: train the default LSTM into a temp dir).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-faults-"))
    corpus = "".join(pd.read_csv(REPO / "data" / "reviews.csv").text.astype(str))
    if args.model:
        model = Path(args.model)
    else:
        from sentiment_tf import train

        model = work / "m"
        train.main(["--output", str(model), "--run-dir", str(work / "run")])
    srv = Served(model, log=work / "serve.log")
    try:
        probe_running(srv, corpus)
        probe_port_and_pin(srv, model, work)
    finally:
        srv.stop()
    probe_sigterm(model, corpus, work, None)
    probe_sigterm(model, corpus, work, 3.0)
    print()
    print("| probe | measured | target | |")
    print("|---|---|---|---|")
    for what, measured, target, ok in ROWS:
        print(f"| {what} | {measured} | {target} | {'PASS' if ok else 'FAIL'} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
