"""Loader: formats, encodings, cleaning, de-duplication, leakage and every bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sentiment_tf.core.config import DataConfig
from sentiment_tf.core.errors import UserError
from sentiment_tf.data.splits import LabelMap, clean_frame, load_splits, read_table, read_texts
from tests.helpers import assert_user_error, cli

ROWS = [("这家酒店很干净，服务也好", "正面"), ("房间太小了，还很吵", "负面"), ("早餐丰富，位置方便", "正面"),
        ("空调坏了也没人修", "负面")]


def _frame(n_per_class: int = 30) -> pd.DataFrame:
    rows = [(f"{text} 第{i}次", label) for i in range(n_per_class) for text, label in ROWS]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "data.csv"
    _frame(2).to_csv(path, index=False, encoding=encoding)
    frame = read_table(path, "text", "label")
    assert frame.text.tolist() == _frame(2).text.tolist()
    assert set(frame.label) == {"正面", "负面"}


def test_undecodable_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\n\x81\x20\xff\xfe\x81,1\n")
    with pytest.raises(UserError, match="cannot decode .* UTF-8, UTF-8 with BOM or GB18030"):
        read_table(path, "text", "label")


@pytest.mark.parametrize("ext", ["tsv", "jsonl", "xlsx"])
def test_other_formats(tmp_path: Path, ext: str) -> None:
    frame = _frame(2)
    path = tmp_path / f"data.{ext}"
    if ext == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif ext == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_excel(path, index=False)
    assert read_table(path, "text", "label").text.tolist() == frame.text.tolist()


def test_unknown_column_lists_real_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    _frame(2).rename(columns={"text": "review"}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"column 'text' not found .* its columns are: review, label"):
        read_table(path, "text", "label")


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    labels = pd.Series(["10", "2", "1", "2"])
    assert LabelMap.from_labels(labels).names == ["1", "2", "10"]
    path = tmp_path / "data.jsonl"
    pd.DataFrame({"text": ["好", "差", "一般"], "label": [1, 0, 2]}).to_json(path, orient="records", lines=True)
    assert read_table(path, "text", "label").label.tolist() == ["1", "0", "2"]


def test_cleaning_dedup_and_conflicts() -> None:
    frame = pd.DataFrame({
        "text": ["很好！", "很好!", "ＧＯＯＤ 很好 http://a.cn", "good 很好", "一般", "一般", None, "  ", "差"],
        "label": ["正面", "正面", "正面", "正面", "正面", "负面", "正面", "负面", None],
    })
    clean, stats = clean_frame(frame)
    # Full-width and half-width forms are the same text after cleaning, so they are duplicates.
    assert sorted(clean.text) == ["good 很好", "很好!"]
    assert stats["duplicates"] == 2
    assert stats["conflicting_texts"] == 1  # 一般 is both 正面 and 负面: dropped entirely
    assert stats["empty_text"] == 2 and stats["missing_label"] == 1


def test_split_has_no_leakage_and_is_seeded(tmp_path: Path) -> None:
    frame = _frame(40)
    # Add normalisation-level duplicates: they must collapse before the split.
    frame = pd.concat([frame, frame.assign(text=frame.text.str.replace("，", ","))], ignore_index=True)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    a = load_splits(DataConfig(data=str(path), seed=1))
    b = load_splits(DataConfig(data=str(path), seed=1))
    train, val, test = set(a.train.text), set(a.val.text), set(a.test.text)
    assert not train & test and not train & val and not val & test
    assert len(train) + len(val) + len(test) == 160
    assert a.test.text.tolist() == b.test.text.tolist()
    assert set(a.test.label) == {"正面", "负面"}  # stratified


def test_supplied_test_file_is_removed_from_training(tmp_path: Path) -> None:
    frame = _frame(30)
    train_path, test_path = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.to_csv(train_path, index=False)
    frame.iloc[:20].to_csv(test_path, index=False)
    splits = load_splits(DataConfig(data=str(train_path), test_data=str(test_path)))
    assert len(splits.test) == 20
    assert not set(splits.train.text) & set(splits.test.text)
    assert not set(splits.val.text) & set(splits.test.text)


def test_unseen_test_label_is_refused(tmp_path: Path) -> None:
    train_path, test_path = tmp_path / "train.csv", tmp_path / "test.csv"
    _frame(10).to_csv(train_path, index=False)
    pd.DataFrame({"text": ["一般般吧"], "label": ["中性"]}).to_csv(test_path, index=False)
    with pytest.raises(UserError, match="test label.*'中性' never occur in the training data"):
        load_splits(DataConfig(data=str(train_path), test_data=str(test_path)))


def test_single_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    _frame(5).assign(label="正面").to_csv(path, index=False)
    with pytest.raises(UserError, match="single label"):
        load_splits(DataConfig(data=str(path)))


def test_nothing_left_after_cleaning(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["   ", "<br/>", "http://x.cn"], "label": ["a", "b", "a"]}).to_csv(path, index=False)
    with pytest.raises(UserError, match="no usable rows"):
        load_splits(DataConfig(data=str(path)))


def test_header_only_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(UserError, match="no data rows"):
        read_table(path, "text", "label")


def test_cli_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path: Path) -> None:
    good = tmp_path / "data.csv"
    _frame(10).rename(columns={"text": "review"}).to_csv(good, index=False)
    out = tmp_path / "models"
    cases = [
        (["--data", str(tmp_path / "missing.csv")], ["data file not found", "missing.csv"]),
        (["--data", str(good)], ["column 'text' not found", "its columns are: review, label"]),
        (["--data", str(good), "--text-col", "review", "--label-col", "review"],
         ["--label-col 'review' has 40 distinct values", "does not look like a label column"]),
        (["--data", str(good), "--text-col", "review", "--val-size", "0.9"], ["--val-size must be between"]),
    ]
    for args, fragments in cases:
        proc = cli("train", *args, "--output", str(out), cwd=tmp_path)
        assert_user_error(proc, *fragments)
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_read_texts_lines_tables_and_a_missing_file(tmp_path: Path) -> None:
    """Unlabelled text for pretrain --corpus and finetune --unlabelled: lines (tags stripped) or a table's column."""
    lines = tmp_path / "texts.txt"
    lines.write_text("房间很干净\n\n迈向/v  充满/v  希望/n\n", encoding="gb18030")
    table = tmp_path / "texts.csv"
    pd.DataFrame({"id": [1, 2], "review": ["早餐不错", "隔音差"]}).to_csv(table, index=False)
    assert read_texts([str(lines), str(table)], "review", "--unlabelled") == ["房间很干净", "迈向充满希望", "早餐不错", "隔音差"]
    with pytest.raises(UserError, match=r"^--unlabelled .*nope.txt: file not found$"):
        read_texts([str(tmp_path / "nope.txt")], "text", "--unlabelled")
    with pytest.raises(UserError, match="review"):  # the wrong column: the real ones are listed
        read_texts([str(table)], "text", "--unlabelled")


def test_plain_tsv_with_quote_characters_keeps_every_row(tmp_path: Path) -> None:
    """ChnSentiCorp's TSVs hold one review per line and some start with '"': read as quotes, they
    swallowed the lines after them (9,146 of 9,600 rows). A quoted TSV (as pandas writes) still reads."""
    lines = ["label\ttext_a", '1\t"好评，物流快', "0\t太差了", '1\t他说"还行"', "0\t不会再买"]
    (tmp_path / "plain.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "plain.tsv", "text_a", "label")
    assert frame["text"].tolist() == ['"好评，物流快', "太差了", '他说"还行"', "不会再买"]
    assert frame["label"].tolist() == ["1", "0", "1", "0"]
    quoted = pd.DataFrame({"text": ['他说"好"', "一行\n两行"], "label": ["1", "0"]})
    quoted.to_csv(tmp_path / "quoted.tsv", sep="\t", index=False)
    assert read_table(tmp_path / "quoted.tsv", "text", "label")["text"].tolist() == ['他说"好"', "一行\n两行"]
