"""The in-graph WordPiece equals the Hugging Face tokenizer, id for id, for cased and uncased
checkpoints, on bundled reviews and on texts built to hit every known difference (ASCII symbols,
full-/half-width, accents, final sigma, control and format characters, emoji and kana runs past
100 bytes, words past 100 characters, rare CJK ranges, literal special tokens)."""

from __future__ import annotations

import pytest

from tests.helpers import MIXED, synthetic_texts

tf = pytest.importorskip("tensorflow")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
@pytest.fixture(scope="module")
def corpus(reviews) -> list[str]:
    return reviews["text"].tolist()[:1200] + MIXED + synthetic_texts(400)


@pytest.mark.parametrize("do_lower_case", [True, False])
@pytest.mark.parametrize("clean_lowercase", [True, False])
def test_graph_ids_equal_hf_tokenizer(tmp_path, corpus, reviews, do_lower_case, clean_lowercase):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    from sentiment_tf.data.cleaning import clean_text
    from sentiment_tf.models.bert.preprocessor import WordPieceGraph, WordPieceSettings, encode

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
