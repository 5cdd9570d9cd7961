"""The in-graph WordPiece equals the Hugging Face tokenizer, id for id, for cased and uncased
checkpoints, on bundled reviews and on texts built to hit every known difference (ASCII symbols,
full-/half-width, accents, final sigma, control and format characters, emoji and kana runs past
100 bytes, words past 100 characters, rare CJK ranges, literal special tokens)."""

from __future__ import annotations

import random

import pytest

tf = pytest.importorskip("tensorflow")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
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


@pytest.fixture(scope="module")
def corpus(reviews) -> list[str]:
    from tests.test_bert import MIXED

    return reviews["text"].tolist()[:1200] + MIXED + synthetic_texts(400)


@pytest.mark.parametrize("do_lower_case", [True, False])
@pytest.mark.parametrize("clean_lowercase", [True, False])
def test_graph_ids_equal_hf_tokenizer(tmp_path, corpus, reviews, do_lower_case, clean_lowercase):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.models.bert.classifier import encode
    from sentiment_tf.models.bert.preprocessor import WordPieceGraph, WordPieceSettings

    wp = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, lowercase=do_lower_case)
    wp.train_from_iterator(reviews["text"].tolist()[:3000] + synthetic_texts(300, seed=1), vocab_size=4000,
                           min_frequency=1, special_tokens=SPECIALS)
    wp.save_model(str(tmp_path))
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=do_lower_case)
    settings = WordPieceSettings.from_hf(tok)
    assert settings.lowercase == settings.strip_accents == do_lower_case
    graph = WordPieceGraph(str(tmp_path / "vocab.txt"), settings, tok.unk_token_id)
    cleaned = [clean_text(t, clean_lowercase) for t in corpus]
    # encode() is what training feeds the model: [CLS] … [SEP], no truncation at this length.
    python_ids = [row[1:-1] for row in encode(tok, cleaned, 100_000).to_list()]
    graph_ids = graph(tf.constant(cleaned)).to_list()
    mismatches = [(t, p, g) for t, p, g in zip(cleaned, python_ids, graph_ids) if p != g]
    assert not mismatches, [(t[:60], tok.convert_ids_to_tokens(p)[:12], tok.convert_ids_to_tokens(g)[:12])
                            for t, p, g in mismatches[:3]]
    if not clean_lowercase and not do_lower_case:  # case survives both tokenizers
        assert any(any(c.isupper() for c in t) for t in tok.convert_ids_to_tokens(python_ids[-1]))
