"""Versioned, atomic SavedModel exports in TF Serving layout, and loading them back safely.

Layout of ``<base>/<version>/`` (TF Serving picks the highest integer directory)::

    saved_model.pb, variables/           the SavedModel (signature ``serving_default``)
    assets.extra/sentiment_tf.json       labels, tokenizer settings, signature description
    assets.extra/vocab.txt               token per line, line n = id n (0 = padding, 1 = [UNK])
    assets.extra/config.json             the resolved training config
    assets.extra/user_dict.txt, stopwords.txt   when the tokenizer used them

A version is written into a hidden sibling directory, verified by loading it and comparing its
outputs with the in-memory model, and only then renamed to the next free integer. Existing
versions are never touched; a failure at any point leaves no numeric directory behind.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiment_tf import __version__
from sentiment_tf.core import atomic
from sentiment_tf.core.errors import DISK_ERRNOS, UserError
from sentiment_tf.export import model_card

log = logging.getLogger(__name__)

FORMAT = "sentiment_tf"
FORMAT_VERSION = 1
META_DIR = "assets.extra"
META_FILE = "sentiment_tf.json"
FAILED_EXPORT = "unverified-export"  # in a run directory: a version that failed its export check


def metadata_path(version_dir: str | Path) -> Path:
    return Path(version_dir) / META_DIR / META_FILE


def versions(base: Path) -> list[int]:
    """The numeric version directories under ``base``, ascending."""
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def check_base_dir(base: str | Path) -> Path:
    """Refuses an export base that holds anything but our versions (checked before training)."""
    base = Path(base)
    if base.exists() and not base.is_dir():
        raise UserError(f"--output {base} is a file; pass a directory for versioned exports")
    if not base.exists():
        return base
    for entry in base.iterdir():
        if entry.name.startswith("."):
            continue  # our in-progress temporaries and hidden files
        if entry.name.isdigit() and entry.is_dir() and metadata_path(entry).is_file():
            continue
        raise UserError(f"--output {base} holds {entry.name!r}, which is not a sentiment_tf export version; "
                        "choose an empty or new directory")
    return base


def check_lineage(base: str | Path, data: str | None, labels: list[str] | None, allow: bool) -> None:
    """Refuses to add a version to ``base`` when its newest version was trained on another data file or
    label set (``labels`` None: not known yet), unless ``allow``: that run would silently become the
    version ``predict`` and ``serve`` use (checked before training)."""
    base = Path(base)
    newest = next((v for v in reversed(versions(base)) if metadata_path(base / str(v)).is_file()), None) \
        if base.is_dir() else None
    if newest is None or not data:
        return
    try:
        meta = read_metadata(base / str(newest))
        config = json.loads((base / str(newest) / META_DIR / "config.json").read_text(encoding="utf-8"))
    except (UserError, OSError, ValueError):
        return  # a damaged version is reported where it is loaded; nothing to compare with here
    theirs, their_labels = config.get("DataConfig", {}).get("data"), meta.get("labels") or []
    other_file = bool(theirs) and Path(theirs).resolve() != Path(data).resolve()
    other_labels = labels is not None and sorted(map(str, labels)) != sorted(map(str, their_labels))
    if not (other_file or other_labels) or allow:
        if other_file or other_labels:
            log.warning("--output %s: version %d was trained on other data (%s); adding version %d as asked",
                        base, newest, Path(theirs or "?").name, newest + 1)
        return
    accuracy = (meta.get("metrics") or {}).get("test_accuracy")
    what = (f"{Path(theirs).name}" if other_file else f"labels {', '.join(map(str, their_labels))}")
    ours = Path(data).name if other_file else f"labels {', '.join(map(str, labels or []))}"
    raise UserError(f"--output {base}: its newest version {newest} was trained on {what}"
                    f"{f' (test accuracy {accuracy:.4f})' if isinstance(accuracy, (int, float)) else ''} and this "
                    f"run on {ours}; export elsewhere (--output) or add --allow-other-data to make it version "
                    f"{newest + 1}")


def write_version(base: str | Path, write_model: Callable[[Path], None], metadata: dict[str, Any],
                  extra_files: dict[str, str | Path | bytes], verify: Callable[[Path], None],
                  keep_failed: Path | None = None, about: model_card.FamilyCard | None = None) -> Path:
    """Writes a new export version atomically and returns its directory.

    Args:
        base: the model's base directory (``saved_models/lstm``).
        write_model: writes the SavedModel into the directory it is given.
        metadata: family-specific fields for ``sentiment_tf.json``.
        extra_files: ``{name: source path or bytes}`` copied into ``assets.extra/``.
        verify: loads the written directory and raises if it disagrees with the model in memory.
        about: what the family says of the model in its card (``MODEL_CARD.md``; no card without it).
        keep_failed: where a version that fails ``verify`` is moved (never published), so the trained
            model survives for ``python -m sentiment_tf.publish --run``.
    """
    base = check_base_dir(base)
    for stale in atomic.remove_stale_temp_dirs(base, ".export-"):
        log.info("removed %s, left by a killed export", stale)
    with atomic.temp_dir_beside(base, prefix=".export-") as tmp:
        write_model(tmp)
        extra = tmp / META_DIR
        extra.mkdir(exist_ok=True)
        for name, src in extra_files.items():
            (extra / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                (extra / name).write_bytes(src)
            else:
                shutil.copyfile(src, extra / name)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sentiment_tf_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **metadata}
        atomic.write_json(extra / META_FILE, meta)
        config = extra_files.get("config.json")
        if about is not None:
            (extra / model_card.CARD_FILE).write_bytes(model_card.render_bytes(
                meta, config if isinstance(config, bytes) else None, about))
        try:
            verify(tmp)
        except ExportCheckError:
            if keep_failed is not None:
                shutil.rmtree(keep_failed, ignore_errors=True)
                shutil.move(str(tmp), str(keep_failed))
            raise
        version = (versions(base) or [0])[-1] + 1
        while True:
            target = base / str(version)
            try:
                if target.exists():  # rename() would replace an empty directory
                    raise FileExistsError(target)
                os.rename(tmp, target)
                break
            except OSError as err:
                if isinstance(err, FileExistsError) or err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    version += 1  # another export took this number meanwhile
                    continue
                raise
    log.info("exported %s", target)
    return target


class ExportCheckError(UserError):
    """The written SavedModel disagrees with the trained model; nothing was published."""


def signature_verifier(inputs: list[str], expected: Any, atol: float, input_name: str,
                       expected_ids: list[list[int]] | None = None,
                       expected_tokens: tuple[list[str], list[list[str]]] | None = None) -> Callable[[Path], None]:
    """A ``verify`` for :func:`write_version`. With ``expected_ids``, the ``tokenize`` signature must give
    exactly those ids for ``inputs``; with ``expected_tokens`` (texts, their tokens), exactly those tokens
    (a tokenizer mismatch). Then ``serving_default``'s probabilities must be within ``atol`` of
    ``expected`` (float noise between graph and eager stays far below it)."""

    def verify(path: Path) -> None:
        import numpy as np
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        if expected_tokens is not None:
            texts, want_all = expected_tokens
            for start in range(0, len(texts), 512):
                out = loaded.signatures["tokenize"](**{input_name: tf.constant(texts[start:start + 512])})
                rows = [[t.decode("utf-8") for t in row[:n]]
                        for row, n in zip(out["tokens"].numpy(), out["length"].numpy())]
                for text, want, got in zip(texts[start:start + 512], want_all[start:start + 512], rows):
                    if want != got:
                        at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
                        raise ExportCheckError(
                            f"export check failed: the graph's tokens differ from jieba's for {text[:60]!r} from "
                            f"token {at} ({' '.join(want[at:at + 3])!r} vs {' '.join(got[at:at + 3])!r})")
        if expected_ids is not None:
            out = loaded.signatures["tokenize"](**{input_name: tf.constant(inputs)})
            rows = [ids[:n].tolist() for ids, n in zip(out["input_ids"].numpy(), out["length"].numpy())]
            for text, want, got in zip(inputs, expected_ids, rows):
                if want != got:
                    at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
                    raise ExportCheckError(f"export check failed: the exported tokenizer's ids differ from the "
                                           f"Python tokenizer's for {text[:40]!r} (from position {at})")
        got = loaded.signatures["serving_default"](**{input_name: tf.constant(inputs)})["probabilities"].numpy()
        errors = np.abs(got - expected).max(axis=-1)
        worst = int(errors.argmax()) if len(errors) else 0
        if len(errors) and errors[worst] > atol:
            raise ExportCheckError(f"export check failed: exported probabilities differ from the trained model's by "
                                   f"{errors[worst]:.2e} (> {atol:.0e}) for {inputs[worst][:40]!r}")

    return verify


def resolve_version_dir(path: str | Path) -> Path:
    """A version directory, or the newest version inside a base directory; refuses anything else."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"model directory not found: {path}")
    if metadata_path(p).is_file():
        return p
    if p.is_dir():
        ours = [v for v in versions(p) if metadata_path(p / str(v)).is_file()]
        if ours:
            return p / str(ours[-1])
    raise UserError(f"{path} is not a sentiment_tf model (no {META_DIR}/{META_FILE} in it or in a numbered "
                    "version directory); pass a directory written by `python -m sentiment_tf.train`")


def load_saved_model(version_dir: str | Path) -> Any:
    """``tf.saved_model.load``, with a damaged export (truncated or corrupt ``saved_model.pb`` or
    variables) reported in one line naming the file, not TensorFlow's traceback."""
    import tensorflow as tf

    version_dir = Path(version_dir)
    try:
        return tf.saved_model.load(str(version_dir))
    except Exception as err:  # noqa: BLE001 - protobuf, checkpoint reader and OpErrors all mean "damaged"
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        graph = version_dir / "saved_model.pb"
        culprit = graph if "saved_model.pb" in text or not (version_dir / "variables").is_dir() else (
            version_dir / "variables")
        raise UserError(f"{culprit}: cannot load this export, the file is damaged or incomplete ({first[:160]}); "
                        "export the model again or use another version") from None


def read_metadata(version_dir: str | Path) -> dict[str, Any]:
    path = metadata_path(version_dir)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{version_dir} is not a sentiment_tf model (format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(f"{version_dir} was written by a newer sentiment_tf (format "
                        f"{meta['format_version']}); upgrade sentiment_tf to load it")
    temperature = meta.get("temperature", 1.0)  # in the graph already; finetune continues from it
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise UserError(f"{path}: temperature must be a positive number, got {temperature!r}; the metadata is "
                        "damaged, export the model again")
    return meta


def cleaning_lowercase(meta: dict[str, Any]) -> bool:
    """Whether the export's texts were lower-cased when cleaned (BERT: ``cleaning``; LSTM: its tokenizer)."""
    return bool((meta.get("cleaning") or {}).get("lowercase", (meta.get("tokenizer") or {}).get("lowercase", True)))


def describe_versions(base: str | Path) -> list[dict[str, Any]]:
    """One row per version directory under ``base`` (newest first): date, family, test metrics, training
    data and tokenizer, or why it is not a usable export."""
    base = Path(base)
    if not base.is_dir():
        raise UserError(f"--model {base}: no such directory")
    if metadata_path(base).is_file():
        raise UserError(f"--model {base} is one version; pass its base directory ({base.parent}) to list versions")
    rows = []
    for v in reversed(versions(base)):
        try:
            meta = read_metadata(base / str(v))
        except UserError as err:
            rows.append({"version": v, "problem": str(err)})
            continue
        metrics = meta.get("metrics", {})
        try:
            config = json.loads((base / str(v) / META_DIR / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        data = config.get("DataConfig", {}).get("data")
        tok = meta.get("tokenizer") or {}
        wordpiece = meta.get("wordpiece")
        tokenizer = (f"jieba {tok.get('jieba_version')} {tok.get('mode')}" + (" +user dict" if tok.get("user_dict_sha256") else "")
                     if tok else "WordPiece " + ("lower-cased" if wordpiece.get("lowercase") else "cased")
                     if wordpiece is not None else "-")
        rows.append({"version": v, "created": meta.get("created"), "family": meta.get("family"),
                     "test_accuracy": metrics.get("test_accuracy"), "test_weighted_f1": metrics.get("test_weighted_f1"),
                     "test_size": metrics.get("test_size"), "data": Path(data).name if data else None,
                     "finetuned_from": metrics.get("finetuned_from"), "tokenizer": tokenizer,
                     "labels": meta.get("labels")})
    return rows


# ---------------------------------------------------------------------------------------------
# Publishing a trained model, keeping it when that fails, and exporting a kept one again


KEPT_INFO = "unverified-export.json"  # in a run directory: where the kept model was headed, its check texts


def publish(trained: Any, output: str | Path, configs: dict, metrics: dict, check_texts: list[str],
            run_dir: Path) -> Path:
    """Exports ``trained`` as a new version of ``output``. When that fails — the export check, a full
    disk, permissions — the trained model is kept in ``run_dir/unverified-export`` and the one-line
    error says how to export it again (``python -m sentiment_tf.publish --run RUN``)."""
    kept = run_dir / FAILED_EXPORT
    again = f"export it with: python -m sentiment_tf.publish --run {run_dir}"
    info = {"output": str(output), "check_texts": list(check_texts[:64])}  # what `publish --run` needs
    try:
        version = trained.export(output, configs, metrics, check_texts, keep_failed=kept)
    except ExportCheckError as err:
        atomic.write_json(run_dir / KEPT_INFO, info)
        raise UserError(f"{err}; nothing was published. The trained model is kept in {kept}; {again}") from None
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        problem = f"cannot write the export to {output} ({err.strerror})"
        try:
            keep(trained, kept, configs, metrics, check_texts)
            atomic.write_json(run_dir / KEPT_INFO, info)
        except OSError as err2:
            raise UserError(f"{problem}, nor keep the trained model in {run_dir} ({err2.strerror}); its best "
                            f"checkpoint is in {run_dir / 'checkpoints'}; free space and train again") from None
        raise UserError(f"{problem}; nothing was published. The trained model is kept in {kept}; free space or "
                        f"fix permissions, then {again} [--output DIR]") from None
    (run_dir / KEPT_INFO).unlink(missing_ok=True)  # published again by `publish --run`: nothing kept now
    return version


def keep(trained: Any, kept: Path, configs: dict, metrics: dict, check_texts: list[str]) -> None:
    """Writes ``trained`` as a (verified) export at ``kept``, beside the run, replacing an earlier one."""
    staging = kept.parent / f".{kept.name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        version = trained.export(staging, configs, metrics, check_texts)
        shutil.rmtree(kept, ignore_errors=True)
        os.replace(version, kept)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
