"""Domain fine-tuning: vocabulary growth keeps trained rows, before/after reports with forgetting,
user dictionaries recorded, replay without leakage, evaluation modes, BERT layer freezing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_MODEL_ARGS, assert_user_error, cli

pytestmark = pytest.mark.slow  # trains models, serves them or starts processes

tf = pytest.importorskip("tensorflow")

HOTEL = "酒店|宾馆|房间|前台|入住|客房|住宿"


@pytest.fixture(scope="module")
def domain_files(tmp_path_factory, reviews: pd.DataFrame) -> Path:
    """source.csv (non-hotel reviews) and hotel.csv (hotel reviews, own column names, a domain column)."""
    work = tmp_path_factory.mktemp("domain")
    hotel = reviews["text"].str.contains(HOTEL)
    src = pd.concat([reviews[~hotel & (reviews.label == name)].head(150) for name in ("正面", "负面")])
    src.to_csv(work / "source.csv", index=False)
    dom = pd.concat([reviews[hotel & (reviews.label == name)].head(100) for name in ("正面", "负面")])
    dom = dom.rename(columns={"text": "review", "label": "sentiment"}).assign(city=["北京", "上海"] * 100)
    dom.to_csv(work / "hotel.csv", index=False)
    spare = reviews[hotel].iloc[300:400]["text"]  # not in hotel.csv (its first 100 per label)
    (work / "unlabelled.txt").write_text("\n".join(spare[~spare.isin(dom["review"])]) + "\n", encoding="utf-8")
    return work


@pytest.fixture(scope="module")
def source_model(domain_files: Path) -> Path:
    # A higher learning rate than the tiny default, so the source model learns (rather than sitting at
    # chance and predicting one label for every text, which leaves self-training nothing to balance).
    proc = cli("train", "--data", "source.csv", "--output", "src_model", "--run-dir", "run_src", *TINY_MODEL_ARGS,
               "--learning-rate", "0.02", "--epochs", "3", cwd=domain_files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return domain_files / "src_model"


@pytest.fixture(scope="module")
def finetuned(domain_files: Path, source_model: Path):
    (domain_files / "terms.txt").write_text("大床房 5 n\n行政酒廊 5 n\n", encoding="utf-8")
    proc = cli("finetune", "--from", "src_model", "--data", "hotel.csv", "--text-col", "review", "--label-col",
               "sentiment", "--domain-col", "city", "--user-dict", "terms.txt", "--epochs", "2", "--replay", "50",
               "--unlabelled", "unlabelled.txt", "--pseudo-threshold", "0.5",
               "--output", "adapted", "--run-dir", "run_ft", cwd=domain_files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return domain_files, proc


def _meta(version: Path) -> dict:
    return json.loads((version / "assets.extra" / "sentiment_tf.json").read_text(encoding="utf-8"))


def test_finetune_reports_before_and_after_on_both_test_splits(finetuned):
    work, proc = finetuned
    out = proc.stdout
    assert "domain test split" in out and "original test split (forgetting)" in out
    assert out.count("--- before (source model) ---") == 2 and out.count("precision") == 4
    assert "By domain (city)" in out and "北京" in out
    summary = json.loads((work / "run_ft" / "finetune_report.json").read_text(encoding="utf-8"))
    for split in ("domain", "original"):
        r = summary["results"][split]
        assert r["accuracy_change"] == pytest.approx(r["after"]["accuracy"] - r["before"]["accuracy"])
    assert set(summary["by_domain"]) == {"北京", "上海"}
    assert summary["pseudo_labels"] > 0 and summary["pseudo_labels"] % 2 == 0  # the same number per label
    assert (work / "run_ft" / "self_training" / "checkpoints").is_dir()  # adapted again with them
    assert summary["results"]["original"]["after"]["support"] == 30  # the source run's own 10 % test split
    # The adapted model gets its own calibration, decided on the domain's validation split.
    assert "calibration: temperature" in out and (work / "run_ft" / "reliability.png").is_file()
    assert "most confidently wrong" in (work / "run_ft" / "errors.html").read_text(encoding="utf-8")
    meta = json.loads(next((work / "adapted").glob("*/assets.extra/sentiment_tf.json")).read_text(encoding="utf-8"))
    # Its 20 validation texts cannot support a temperature (fewer than 20 misclassified): T stays 1, with why.
    assert meta["temperature"] == summary["calibration"]["temperature"] == 1.0
    assert "misclassified, fewer than the 20" in summary["calibration"]["kept_1"]


def test_finetune_distils_a_domain_teacher_over_the_unlabelled_pool(finetuned, tmp_path):
    """Issue 31's domain version: the source LSTM adapted on the domain labels, learning the soft targets
    of a teacher adapted to the domain (here the adapted LSTM) over labels, replay and the unlabelled pool."""
    work, _ = finetuned
    teacher = work / "adapted"
    proc = cli("finetune", "--from", str(work / "src_model"), "--data", str(work / "hotel.csv"), "--text-col", "review",
               "--label-col", "sentiment", "--teacher", str(teacher), "--unlabelled", str(work / "unlabelled.txt"),
               "--temperature", "2", "--alpha", "0.7", "--epochs", "2", "--replay", "50", "--output", "student",
               "--run-dir", "runs/student", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the adapted model agrees with it on" in proc.stdout
    summary = json.loads((tmp_path / "runs" / "student" / "finetune_report.json").read_text(encoding="utf-8"))
    d = summary["distillation"]
    assert d["path"].startswith(str(teacher)) and (d["temperature"], d["alpha"]) == (2.0, 0.7)
    assert d["transfer_labelled"] > 50 and d["transfer_unlabelled"] > 50 and summary["pseudo_labels"] == 0
    assert 0 <= d["student_agreement"] <= 1
    version = tmp_path / "student" / "1"
    assert _meta(version)["metrics"]["distillation"]["test_accuracy"] == d["test_accuracy"]
    assert "Distilled with `distill`" in (version / "assets.extra" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert list((tmp_path / "runs" / "teacher-cache").glob("teacher-*.npy"))
    proc = cli("finetune", "--from", str(work / "src_model"), "--data", str(work / "hotel.csv"), "--text-col",
               "review", "--label-col", "sentiment", "--teacher", str(teacher), "--cv", "3", cwd=tmp_path)
    assert_user_error(proc, "--teacher", "--cv")


def test_export_grows_vocabulary_and_records_the_merged_user_dict(finetuned, source_model):
    work, _ = finetuned
    old = (source_model / "1" / "assets.extra" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    new = (work / "adapted" / "1" / "assets.extra" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert new[: len(old)] == old and len(new) > len(old)  # old ids unchanged, domain words appended
    meta = _meta(work / "adapted" / "1")
    assert meta["tokenizer"]["user_dict_sha256"] and meta["tokenizer_files"]["user_dict"] == "user_dict.txt"
    assert "行政酒廊" in (work / "adapted" / "1" / "assets.extra" / "user_dict.txt").read_text(encoding="utf-8")
    assert meta["metrics"]["finetuned_from"].endswith("src_model/1")

    from sentiment_tf.serving.predictor import Predictor

    pred = Predictor.load(work / "adapted")
    assert pred.preprocessor.tokenizer.tokenize("行政酒廊很好")[:1] == ["行政酒廊"]
    # The merged dictionary is in the graph too: the export segments the domain word itself.
    out = pred._loaded.signatures["tokenize"](text=tf.constant(["行政酒廊很好"]))
    assert out["tokens"].numpy()[0][0].decode() == "行政酒廊"
    assert pred.predict(["房间很干净，服务也好"]).labels[0] in {"正面", "负面"}


def test_grow_vocabulary_keeps_every_trained_weight(source_model):
    import keras

    from sentiment_tf.models.adaptation import load_source
    from sentiment_tf.models.lstm import classifier as lstm

    source = load_source(str(source_model))
    trained = source.load()
    old = trained.model
    grown = lstm.grow_vocabulary(old, source.model_config(), len(trained.preprocessor.vocabulary) + 2, 7)
    old_table, new_table = old.get_layer("embedding").get_weights()[0], grown.get_layer("embedding").get_weights()[0]
    assert new_table.shape[0] == old_table.shape[0] + 7
    np.testing.assert_array_equal(new_table[: old_table.shape[0]], old_table)
    for layer in old.layers:
        if layer.name != "embedding":
            for a, b in zip(layer.get_weights(), grown.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    ids = np.array([[2, 3, 4, 0], [5, 6, 0, 0]])
    np.testing.assert_allclose(old.predict(ids, verbose=0), grown.predict(ids, verbose=0), atol=1e-6)
    assert isinstance(grown, keras.Model)


def test_replay_sample_never_contains_domain_evaluation_texts(domain_files, source_model):
    from sentiment_tf.data.splits import TEXT, LabelMap
    from sentiment_tf.models.adaptation import load_source, original_splits, replay_sample

    source = load_source(str(source_model))
    original = original_splits(source, None, LabelMap(source.labels))
    exclude = set(original.train[TEXT].head(40))
    sample = replay_sample(original, 100, exclude, seed=0)
    assert len(sample) == 100 and not (set(sample[TEXT]) & exclude)
    assert not (set(sample[TEXT]) & set(original.test[TEXT]))


def test_learning_curve_plots_model_and_tfidf(domain_files, source_model):
    proc = cli("finetune", "--from", "src_model", "--data", "hotel.csv", "--text-col", "review", "--label-col",
               "sentiment", "--epochs", "1", "--learning-curve", "0,20,60", "--output", "curve_out",
               "--run-dir", "run_curve", cwd=domain_files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((domain_files / "run_curve" / "learning_curve.json").read_text(encoding="utf-8"))
    assert [r["labels"] for r in rows] == [0, 20, 60]
    assert all(0 <= r["model_accuracy"] <= 1 and 0 <= r["tfidf_accuracy"] <= 1 for r in rows)
    assert (domain_files / "run_curve" / "learning_curve.png").stat().st_size > 1000
    assert not (domain_files / "curve_out").exists()  # an evaluation mode exports nothing
    # The LSTM replays 1,000 source examples by default when its training data is found (it is, here).
    config = json.loads((domain_files / "run_curve" / "config.json").read_text(encoding="utf-8"))
    assert config["AdaptConfig"]["replay"] == 1000


def test_default_replay_is_off_with_a_warning_when_the_source_data_is_gone(domain_files, source_model, tmp_path):
    import shutil

    (tmp_path / "hotel.csv").write_bytes((domain_files / "hotel.csv").read_bytes())
    moved = tmp_path / "src_model"
    shutil.copytree(source_model, moved)
    recorded = next(moved.glob("*/assets.extra/config.json"))
    config = json.loads(recorded.read_text(encoding="utf-8"))
    config["DataConfig"]["data"] = str(tmp_path / "moved_away.csv")  # the source data is no longer there
    recorded.write_text(json.dumps(config), encoding="utf-8")
    proc = cli("finetune", "--from", str(moved), "--data", "hotel.csv", "--text-col", "review", "--label-col",
               "sentiment", "--epochs", "1", "--output", "out", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replay off: the source model's training data is not found" in proc.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["AdaptConfig"]["replay"] == 0


@pytest.mark.parametrize("mode, file, key", [(["--cv", "2"], "cv.json", "fold"), (["--seeds", "2"], "seeds.json", "seed")])
def test_cv_and_seeds_report_mean_and_std(domain_files, source_model, mode, file, key):
    run = f"run_{file[:-5]}"
    proc = cli("finetune", "--from", "src_model", "--data", "hotel.csv", "--text-col", "review", "--label-col",
               "sentiment", "--epochs", "1", *mode, "--run-dir", run, cwd=domain_files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((domain_files / run / file).read_text(encoding="utf-8"))
    assert [r[key] for r in summary["runs"]] == ([1, 2] if key == "fold" else [42, 43])
    accs = [r["accuracy"] for r in summary["runs"]]
    assert summary["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert "±" in proc.stdout


def test_unknown_domain_label_and_foreign_model_are_one_line_errors(domain_files, source_model, tmp_path):
    pd.DataFrame({"text": ["好", "差", "一般"] * 5, "label": ["正面", "负面", "中性"] * 5}).to_csv(
        tmp_path / "three.csv", index=False)
    proc = cli("finetune", "--from", str(source_model), "--data", "three.csv", "--output", "o", cwd=tmp_path)
    assert_user_error(proc, "'中性'", "正面")
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()
    (tmp_path / "notours").mkdir()
    proc = cli("finetune", "--from", "notours", "--data", "three.csv", cwd=tmp_path)
    assert_user_error(proc, "notours")


def test_bert_finetune_freezes_the_first_layers(tiny_bert, reviews, tmp_path):
    from sentiment_tf.models.bert import classifier as bert

    reviews.head(200).to_csv(tmp_path / "src.csv", index=False)
    reviews.iloc[200:320].to_csv(tmp_path / "dom.csv", index=False)
    from sentiment_tf import finetune, train  # in-process: a fresh TensorFlow per run costs more than the runs

    assert train.main(["--model", "bert", "--pretrained", str(tiny_bert), "--data", str(tmp_path / "src.csv"),
                       "--epochs", "1", "--batch-size", "16", "--max-length", "48", "--output", str(tmp_path / "bert_src"),
                       "--run-dir", str(tmp_path / "r1")]) == 0
    assert finetune.main(["--from", str(tmp_path / "bert_src"), "--data", str(tmp_path / "dom.csv"), "--epochs", "1",
                          "--freeze-layers", "1", "--learning-rate", "1e-3", "--output", str(tmp_path / "bert_dom"),
                          "--run-dir", str(tmp_path / "r2")]) == 0
    def weights(version: Path):
        return bert.load_trained(version, _meta(version)).model

    before, after = weights(tmp_path / "bert_src" / "1"), weights(tmp_path / "bert_dom" / "1")
    def values(layer) -> dict[str, np.ndarray]:  # by name without the model's own prefix
        return {w.name.split("/", 1)[1]: w.numpy() for w in layer.weights}

    after_all = values(after)
    for frozen in (before.bert.embeddings, before.bert.encoder.layer[0]):
        for name, value in values(frozen).items():
            np.testing.assert_array_equal(value, after_all[name])
    changed = [n for n, v in values(before.bert.encoder.layer[1]).items() if not np.array_equal(v, after_all[n])]
    assert changed  # the unfrozen layer trained
    assert _meta(tmp_path / "bert_dom" / "1")["family"] == "bert"


def test_missing_unlabelled_file_fails_before_any_training(tmp_path: Path) -> None:
    proc = cli("finetune", "--from", str(tmp_path / "model"), "--data", str(tmp_path / "d.csv"),
               "--unlabelled", "nope.txt", "--output", str(tmp_path / "out"), cwd=tmp_path, timeout=120)
    assert_user_error(proc, "--unlabelled nope.txt: file not found")
    assert not (tmp_path / "out").exists()


def test_domain_texts_the_source_trained_on_are_warned_about_and_recorded(domain_files, source_model, tmp_path):
    """Adapting on the source's own data: the 'before' score is memory, so say so and count it."""
    proc = cli("finetune", "--from", str(source_model), "--data", str(domain_files / "source.csv"), "--epochs", "1",
               "--seed", "7", "--output", "o", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "domain test texts were in the source model's training data" in proc.stderr
    summary = json.loads((tmp_path / "run" / "finetune_report.json").read_text(encoding="utf-8"))
    stats = json.loads((tmp_path / "run" / "data_stats.json").read_text(encoding="utf-8"))
    overlap = summary["source_overlap"]
    assert overlap == stats["source_overlap"]
    # The source trained on 90 % of source.csv (train + validation); another seed's test split of 30
    # texts shares about 27 with it (with the source's seed it would be the source's own test split).
    assert 20 <= overlap["domain_test_in_source_training"] <= 30 == summary["results"]["domain"]["after"]["support"]


def test_data_stats_record_the_overlap_removed_between_files(tmp_path, reviews):
    from sentiment_tf.core.config import DataConfig
    from sentiment_tf.data.splits import load_splits

    train = reviews.head(200)
    train.to_csv(tmp_path / "train.csv", index=False)
    pd.concat([train.head(7), reviews.iloc[200:260]]).to_csv(tmp_path / "test.csv", index=False)
    pd.concat([train.iloc[10:13], reviews.iloc[300:360]]).to_csv(tmp_path / "val.csv", index=False)
    splits = load_splits(DataConfig(data=str(tmp_path / "train.csv"), test_data=str(tmp_path / "test.csv"),
                                    val_data=str(tmp_path / "val.csv")))
    assert splits.stats["overlap_removed"] == {"train_vs_test": 7, "validation_vs_test": 0, "train_vs_validation": 3}
