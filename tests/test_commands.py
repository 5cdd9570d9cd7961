"""Every command runs as ``python -m sentiment_tf.<command>`` (the other tests call them in-process):
``--help`` answers with the command's own usage through its ``__main__`` entry, and the package top
holds the commands and nothing else."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import sentiment_tf
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # starts a process

COMMANDS = ["batch_predict", "client", "distill", "explain", "finetune", "label", "monitor", "predict", "pretrain",
            "publish", "runs", "select", "serve", "train", "tune"]

# What `python -m` does (runpy, run as __main__), for each command in one fresh interpreter.
_HELP_OF_EACH = """
import contextlib, io, json, runpy, sys
out = {}
for command in sys.argv[1:]:
    sys.argv = [command, "--help"]
    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            runpy.run_module(f"sentiment_tf.{command}", run_name="__main__", alter_sys=True)
        code = None
    except SystemExit as exit_:
        code = exit_.code
    out[command] = [code, text.getvalue()[:200]]
print(json.dumps(out))
"""


def test_the_package_top_holds_the_commands():
    top = sorted(m.name for m in pkgutil.iter_modules(sentiment_tf.__path__) if not m.ispkg)
    assert top == COMMANDS


def test_help_of_every_command_as_python_m():
    proc = subprocess.run([sys.executable, "-c", _HELP_OF_EACH, *COMMANDS], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    for command in COMMANDS:
        code, text = answers[command]
        assert code == 0, (command, code)
        assert text.startswith(f"usage: python -m sentiment_tf.{command}"), (command, text)
