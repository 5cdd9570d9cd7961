"""Bad flags and config-file values are refused at parse time: one line, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiment_tf.core.errors import UserError
from tests.helpers import assert_user_error, cli

MISSING_DATA = ["--data", "no-such-file.csv"]  # reading data would fail differently: proof nothing ran


@pytest.mark.parametrize("module, args, message", [
    ("train", ["--epochs", "0"], "--epochs must be at least 1, got 0"),
    ("train", ["--epochs", "-1"], "--epochs must be at least 1, got -1"),
    ("train", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("train", ["--learning-rate", "0"], "--learning-rate must be above 0"),
    ("train", ["--dropout", "1.5"], "--dropout must be below 1"),
    ("train", ["--max-tokens", "0"], "--max-tokens must be at least 1"),
    ("finetune", ["--from", "x", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    ("finetune", ["--from", "x", "--batch-size", "-4"], "--batch-size must be at least 1"),
    ("finetune", ["--from", "x", "--pseudo-threshold", "2"], "--pseudo-threshold must be at most 1"),
    ("pretrain", ["--corpus", "c.txt", "--output", "o", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("serve", ["--model", "m", "--max-batch", "0"], "--max-batch must be at least 1"),
    ("serve", ["--model", "m", "--port", "70000"], "--port must be at most 65535"),
])
def test_out_of_range_flags_are_refused_before_any_work(module: str, args: list[str], message: str) -> None:
    import importlib

    main = importlib.import_module(f"sentiment_tf.{module}").main
    extra = MISSING_DATA if module == "train" else []
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        main([*args, *extra])


@pytest.mark.parametrize("content, message", [
    ('epochs: "x"\n', "--epochs must be an integer, got 'x'"),
    ("epochs: 2.5\n", "--epochs must be an integer, got 2.5"),
    ("bidirectional: 3\n", "--bidirectional must be true or false, got 3"),
    ("learning_rate: fast\n", "--learning-rate must be a number, got 'fast'"),
    ("rnn: transformer\n", "--rnn must be one of lstm, gru; got 'transformer'"),
    ("batch_size: 0\n", "--batch-size must be at least 1, got 0"),
])
def test_config_file_values_are_checked_like_flags(tmp_path: Path, content: str, message: str) -> None:
    from sentiment_tf.train import main

    path = tmp_path / "c.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        main(["--config", str(path), *MISSING_DATA])


def test_integers_widen_to_floats_in_config_files(tmp_path: Path) -> None:
    from sentiment_tf.core.config import build_configs

    _, _, _, train_cfg = build_configs({"learning_rate": 1, "val_size": 0.2})
    assert train_cfg.learning_rate == 1.0 and isinstance(train_cfg.learning_rate, float)


def test_zero_epochs_is_one_line_from_the_command_line(tmp_path: Path) -> None:
    proc = cli("train", "--epochs", "0", "--output", str(tmp_path / "m"), cwd=tmp_path, timeout=60)
    assert_user_error(proc, "--epochs must be at least 1, got 0")
    assert not (tmp_path / "m").exists() and not (tmp_path / "runs").exists()
