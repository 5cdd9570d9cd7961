""""Adapt now": the finetune command on the labels so far, in a process of its own (the page stays
responsive while it trains), its progress read from its output, and the adapted model then put in
charge of ranking and suggestions."""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

TAIL = 40  # output lines kept for the page


class AdaptJob:
    """At most one finetune at a time.

    Args:
        command: the finetune command line (``python -m sentiment_tf.finetune --from … --data LABELS``) but
            ``--run-dir``.
        runs: each adaptation's run directory is made under it (``adapt-<time>``).
        on_exported: called with the new version directory once the run exported (loads it; may take a while).
    """

    def __init__(self, command: list[str], runs: Path, on_exported: Callable[[Path], None]):
        self.command = command
        self.runs = runs
        self.on_exported = on_exported
        self.lock = threading.Lock()
        self.state = "idle"  # idle | training | loading | done | failed
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL)
        self.started = self.finished = None
        self.error: str | None = None
        self.report: dict | None = None
        self.history: list[dict] = []  # every finished adaptation: labels used, before/after accuracy
        self.process: subprocess.Popen | None = None

    def restore(self, labels: Path) -> Path | None:
        """The adaptations earlier runs of the page made from ``labels`` (their run directories), so a
        restarted page still shows what they gained; returns the newest one's export that still exists (it
        ranks and suggests again), or None."""
        from sentiment_tf.export.versions import metadata_path

        newest = None
        for run in sorted(self.runs.glob("adapt-*")):
            try:
                config = json.loads((run / "config.json").read_text(encoding="utf-8"))
                rows = json.loads((run / "data_stats.json").read_text(encoding="utf-8"))["train_file"]["rows_read"]
                report = json.loads((run / "finetune_report.json").read_text(encoding="utf-8"))
                domain, export = report["results"]["domain"], report["export"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # an interrupted or foreign run
            if Path(config.get("DataConfig", {}).get("data", "")).resolve() == labels.resolve():
                self.history.append({"labels": rows, "before": domain["before"]["accuracy"],
                                     "after": domain["after"]["accuracy"], "test_texts": domain["after"]["support"],
                                     "version": Path(export).name})
                newest = Path(export) if metadata_path(Path(export)).is_file() else newest
        return newest

    def start(self, labels_count: int) -> None:
        from sentiment_tf.labeling.session import Refused

        with self.lock:
            if self.state in ("training", "loading"):
                raise Refused(409, f"an adaptation is already {self.state}; wait for it to finish")
            self.state, self.error, self.report = "training", None, None
            self.tail.clear()
            self.started, self.finished = time.time(), None
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        run_dir = self.runs / time.strftime("adapt-%Y%m%d-%H%M%S")
        n = 1
        while run_dir.exists():  # two within a second
            run_dir, n = self.runs / f"{time.strftime('adapt-%Y%m%d-%H%M%S')}-{n}", n + 1
        args = [*self.command, "--run-dir", str(run_dir)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        encoding="utf-8", errors="replace", env=env)
        threading.Thread(target=self._follow, args=(self.process, labels_count), daemon=True,
                         name="adapt").start()

    def _follow(self, process: subprocess.Popen, labels_count: int) -> None:
        lines: list[str] = []
        for raw in process.stdout:
            for line in re.split(r"[\r\n]+", raw):  # Keras progress bars redraw with \r
                if line.strip():
                    lines.append(line)
                    self.tail.append(line[:300])
        code = process.wait()
        exported = next((line.split("exported:", 1)[1].strip() for line in lines if line.startswith("exported:")), None)
        report_path = next((line.split("report:", 1)[1].strip() for line in lines if line.startswith("report:")), None)
        if code != 0 or exported is None:
            error = next((line[len("error: "):] for line in reversed(lines) if line.startswith("error: ")), None)
            self._finish("failed", error or f"finetune exited with status {code}; its last lines are shown")
            return
        report = self._report(lines, report_path, labels_count)
        with self.lock:
            self.state, self.report = "loading", report
        try:
            self.on_exported(Path(exported))
        except Exception as err:  # the page reports it; labelling goes on with the model it had
            log.exception("loading the adapted model")
            self._finish("failed", f"the adapted model did not load: {type(err).__name__}: {err}".splitlines()[0])
            return
        self.history.append({k: report[k] for k in ("labels", "before", "after", "test_texts", "version")})
        self._finish("done", None)

    def _report(self, lines: list[str], report_path: str | None, labels_count: int) -> dict:
        """The before/after reports as printed, and the domain test split's accuracies."""
        start = next((i for i, line in enumerate(lines) if line.startswith("=== domain test split")), None)
        text = "\n".join(line for line in lines[start:] if not line.startswith(("report:", "exported:"))) \
            if start is not None else ""
        out: dict[str, Any] = {"text": text, "labels": labels_count, "before": None, "after": None, "test_texts": None,
                               "version": None}
        if report_path and Path(report_path).is_file():
            summary = json.loads(Path(report_path).read_text(encoding="utf-8"))
            domain = summary["results"]["domain"]
            out.update(before=domain["before"]["accuracy"], after=domain["after"]["accuracy"],
                       version=Path(summary["export"]).name)
            out["test_texts"] = domain["after"].get("support")
        return out

    def _finish(self, state: str, error: str | None) -> None:
        with self.lock:
            self.state, self.error, self.finished = state, error, time.time()

    def status(self) -> dict:
        """What the page shows: the state, finetune's last lines and report, earlier adaptations (paths cut
        to their last part: the page may be open on another machine)."""
        from sentiment_tf.serving.app import without_paths

        with self.lock:
            elapsed = None if self.started is None else (self.finished or time.time()) - self.started
            report = dict(self.report, text=without_paths(self.report["text"])) if self.report else None
            return {"state": self.state, "elapsed": elapsed, "tail": [without_paths(t) for t in list(self.tail)[-12:]],
                    "error": without_paths(self.error) if self.error else None, "report": report,
                    "history": list(self.history)}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
