"""Cleaning, jieba/char tokenization, recorded settings and vocabulary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sentiment_tf.core.errors import UserError
from sentiment_tf.data.cleaning import clean_text
from sentiment_tf.models.lstm.preprocessor import Tokenizer, TokenizerSettings, build_vocabulary


@pytest.mark.parametrize("raw, expected", [
    ("ＡＢＣ１２３，很好！", "abc123,很好!"),  # full-width → half-width, lower-case
    ("<p>房间&amp;早餐</p>", "房间&早餐"),
    ("看这里 https://example.com/a?b=1 很好", "看这里 很好"),
    ("  多个\t\n空白\u3000字符  ", "多个 空白 字符"),
])
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_word_and_char_modes() -> None:
    assert Tokenizer("word").tokenize("这家酒店很干净") == ["这家", "酒店", "很", "干净"]
    assert Tokenizer("char").tokenize("酒店iPhone 100分") == ["酒", "店", "iphone", "100", "分"]


def test_tokens_never_contain_spaces() -> None:
    for mode in ("word", "char"):
        for tok in Tokenizer(mode).tokenize("Wi Fi 信号  很差 ,  a b"):
            assert tok and " " not in tok


def test_user_dict_and_stopwords(tmp_path: Path) -> None:
    text = "这款扫地机器人吸力很强"
    assert "扫地机器人" not in Tokenizer("word").tokenize(text)
    udict = tmp_path / "dict.txt"
    udict.write_text("扫地机器人 100 n\n", encoding="utf-8")
    stop = tmp_path / "stop.txt"
    stop.write_text("很\n这款\n", encoding="utf-8")
    tokens = Tokenizer("word", user_dict=udict, stopwords=stop).tokenize(text)
    assert "扫地机器人" in tokens and "很" not in tokens and "这款" not in tokens


def test_settings_round_trip_and_mismatch(tmp_path: Path) -> None:
    import jieba

    udict = tmp_path / "dict.txt"
    udict.write_text("扫地机器人 100 n\n", encoding="utf-8")
    tok = Tokenizer("word", hmm=False, user_dict=udict)
    saved = tok.settings
    assert saved.jieba_version == jieba.__version__ and saved.hmm is False
    assert TokenizerSettings(**dataclasses.asdict(saved)) == saved  # JSON-able and lossless
    tok.ensure_matches(saved)
    udict.write_text("扫地机器人 100 n\n洗地机 50 n\n", encoding="utf-8")  # dictionary edited afterwards
    with pytest.raises(UserError, match="user_dict_sha256"):
        Tokenizer("word", hmm=False, user_dict=udict).ensure_matches(saved)
    with pytest.raises(UserError, match="hmm: model=False here=True"):
        Tokenizer("word", hmm=True).ensure_matches(dataclasses.replace(saved, user_dict_sha256=None))
    with pytest.raises(UserError, match="jieba_version"):
        tok.ensure_matches(dataclasses.replace(tok.settings, jieba_version="0.1"))


def test_missing_user_dict_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="user dictionary not found"):
        Tokenizer("word", user_dict=tmp_path / "nope.txt")


def test_vocabulary_is_deterministic_and_respects_min_freq() -> None:
    lines = ["好 好 差", "差 一般", "好"]
    assert build_vocabulary(lines, min_freq=2) == ["好", "差"]
    assert build_vocabulary(lines, min_freq=1) == ["好", "差", "一般"]
    assert build_vocabulary(lines, min_freq=1, max_size=3) == ["好"]  # 2 slots reserved
