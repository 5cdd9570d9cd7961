"""Every command runs as ``python -m sentiment_tf.<command>`` in a process of its own (the other tests
call them in-process): ``--help`` answers with the command's own usage, and the package top holds
the commands and nothing else."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import sentiment_tf
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # starts processes

COMMANDS = ["batch_predict", "client", "explain", "finetune", "monitor", "predict", "pretrain", "publish", "runs",
            "select", "serve", "train", "tune"]


def test_the_package_top_holds_the_commands():
    top = sorted(m.name for m in pkgutil.iter_modules(sentiment_tf.__path__) if not m.ispkg)
    assert top == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_help_as_a_process(command: str):
    proc = subprocess.run([sys.executable, "-m", f"sentiment_tf.{command}", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m sentiment_tf.{command}")
    assert "Traceback" not in proc.stderr
