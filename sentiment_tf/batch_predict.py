"""Bulk scoring on Apache Beam: ``python -m sentiment_tf.batch_predict`` (``pip install '.[beam]'``).

    python -m sentiment_tf.batch_predict --model saved_models/lstm --input 'reviews-*.csv' --text-col review --output preds
    python -m sentiment_tf.batch_predict --model gs://bucket/lstm/3 --input 'gs://bucket/in/*.jsonl' --output gs://bucket/out \\
        --runner DataflowRunner --project P --region R --temp_location gs://bucket/tmp   # any Beam pipeline option

Files (CSV/TSV/JSON lines/text; each read in row chunks, as ``predict`` reads them) → the text of
``--text-col`` → segmented with the export's recorded jieba settings (checked, as ``predict`` checks
them; BERT exports take raw text) → the SavedModel's ``serving_default`` in Beam's ``RunInference``
with a TensorFlow model handler (Beam batches) → ``<output>-predictions-*.jsonl``: each input row's
columns, ``source_file``, ``source_row``, ``pred_label`` and one ``pred_prob_<label>`` per label. A
text with nothing to classify (an empty cell, only emoji or punctuation) gets ``pred_label`` null and a
``pred_reason``, as in every command. Rows that cannot be scored (a text that is not a string, an
unreadable file) go to ``<output>-errors-*.jsonl`` with the reason; they never stop the pipeline.

Locally the DirectRunner runs in multi-process mode (``--direct_num_workers``, default 2); the same
pipeline runs unchanged on Dataflow, Flink or Spark (``--runner``).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs, require
from sentiment_tf.core.errors import UserError, entry_point, setup_logging
from sentiment_tf.data.cleaning import NOTHING_TO_CLASSIFY, has_words

log = logging.getLogger("sentiment_tf.batch_predict")

ERRORS = "errors"


@dataclasses.dataclass
class BatchPredictConfig:
    """What to score, with which export, where the results go, and on which Beam runner (options this
    command does not know go to Beam, e.g. --direct_num_workers 4 or Dataflow's --project)."""

    model: str = option("Export version directory, or a base directory (newest version).", default="")
    input: str = option("File pattern: CSV/TSV/JSON lines/.txt (quote the wildcard).", default="")
    output: str = option("Output prefix: <output>-predictions-*.jsonl and <output>-errors-*.jsonl.", default="")
    text_col: str = option("Text column.", default="text")
    runner: str = option("Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, …",
                         default="DirectRunner")
    batch_size: int = option("Most texts per model call (Beam batches up to it).", at_least=1, default=256)
    chunk_size: int = option("Rows read from a file at a time: the unit of work spread over the workers.",
                             at_least=1, default=2000)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        require(self, "model", "input", "output")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("batch_predict", __doc__, BatchPredictConfig)


def input_files(pattern: str) -> list[str]:
    """The files the pattern matches now (local paths, or any filesystem Beam knows: gs://, s3://, hdfs://)."""
    if "://" not in pattern:
        return sorted(p for p in glob.glob(pattern) if Path(p).is_file())
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


class ReadChunks:
    """A file → its rows in chunks of ``chunk_size`` (the unit spread over workers); a file that cannot be
    read is one dead letter."""

    def __init__(self, text_col: str, chunk_size: int):
        self.text_col, self.chunk_size = text_col, chunk_size

    def __call__(self, path: str):
        import apache_beam as beam

        from sentiment_tf.data.streaming import read_chunks

        row = 0
        try:
            chunks, _ = read_chunks(path, self.text_col, self.chunk_size)
            for chunk in chunks:
                records = chunk.to_dict("records")
                yield {"source_file": path, "first_row": row, "records": records}
                row += len(records)
        except UserError as err:
            yield beam.pvalue.TaggedOutput(ERRORS, {"source_file": path, "source_row": row, "reason": str(err)})


class Prepare:
    """A chunk → (row, the signature's input) per row, in order of length: the chunk's texts segmented in
    one call with the export's tokenizer (LSTM) or left raw (BERT); a row without a usable text is a
    dead letter."""

    def __init__(self, version_dir: str, text_col: str):
        self.version_dir, self.text_col, self.inputs = version_dir, text_col, None

    def __call__(self, chunk: dict):
        import apache_beam as beam

        if self.inputs is None:  # once per worker: the tokenizer, checked against the export
            from sentiment_tf.serving.predictor import ExportInputs

            self.inputs = ExportInputs.load(self.version_dir)
        good = []
        for offset, columns in enumerate(chunk["records"]):
            record = {"source_file": chunk["source_file"], "source_row": chunk["first_row"] + offset, "columns": columns}
            text = columns.get(self.text_col)
            if text is None or (isinstance(text, float) and text != text):
                good.append((record, ""))  # an empty cell: nothing to classify, answered as such
            elif not isinstance(text, str):
                yield beam.pvalue.TaggedOutput(ERRORS, {**_where(record), "reason": f"the text in column "
                                                        f"{self.text_col!r} is not a string ({type(text).__name__})"})
            else:
                good.append((record, text))
        prepared = self.inputs.prepare([text for _, text in good])
        # Shortest first: Beam batches neighbours, and the signature pads a batch to its longest text.
        for i in sorted(range(len(good)), key=lambda i: len(prepared[i])):
            yield good[i][0], prepared[i]


def _where(record: dict) -> dict:
    return {"source_file": record["source_file"], "source_row": record["source_row"]}


def model_handler(version_dir: str, input_name: str, raw_text: bool, batch_size: int) -> Any:
    """Beam's TensorFlow model handler, loading the SavedModel's ``serving_default`` (its stock loader
    goes through ``tf.keras.models.load_model``, which Keras 3 no longer gives SavedModels to)."""
    from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

    class SavedModelHandler(TFModelHandlerTensor):
        def load_model(self):
            if raw_text:
                import tensorflow_text  # noqa: F401 - the tokenizer ops of BERT exports

            from sentiment_tf.export.versions import load_saved_model

            return load_saved_model(self._model_uri).signatures["serving_default"]

    def infer(signature, batch, inference_args, model_id=None):
        import tensorflow as tf

        probs = signature(**{input_name: tf.constant(list(batch), dtype=tf.string)})["probabilities"].numpy()
        return [PredictionResult(x, p, model_id) for x, p in zip(batch, probs)]

    return KeyedModelHandler(SavedModelHandler(version_dir, inference_fn=infer, max_batch_size=batch_size))


def to_json(labels: list[str], text_col: str):
    def row(keyed: tuple) -> str:
        record, result = keyed
        probs = [float(p) for p in result.inference]
        best = max(range(len(probs)), key=probs.__getitem__)
        columns = {k: (None if isinstance(v, float) and v != v else v) for k, v in record["columns"].items()}
        out = {**columns, **_where(record)}
        if has_words(columns.get(text_col) or ""):
            out.update({"pred_label": labels[best], **{f"pred_prob_{name}": round(p, 6) for name, p in zip(labels, probs)}})
        else:  # the rule every command follows: no label, and why
            out.update({"pred_label": None, **{f"pred_prob_{name}": None for name in labels},
                        "pred_reason": NOTHING_TO_CLASSIFY})
        return json.dumps(out, ensure_ascii=False, default=str)

    return row


def main(argv: list[str] | None = None) -> int:
    (args,), ns = parse_configs(build_parser(), argv, (BatchPredictConfig,), others=True)
    beam_args = ns.others
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)  # a line per worker message otherwise
    try:
        import apache_beam as beam
        from apache_beam.ml.inference.base import RunInference
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise UserError("batch_predict needs Apache Beam: pip install 'sentiment_tf[beam]' "
                        "(or pip install -r requirements-beam.txt)") from None
    from sentiment_tf.core import atomic
    from sentiment_tf.serving.predictor import ExportInputs

    inputs = ExportInputs.load(args.model)  # a foreign directory or a tokenizer mismatch stops here, not in workers
    files = input_files(args.input)
    if not files:
        raise UserError(f"--input {args.input!r} matches no files")
    if "://" not in args.output:
        atomic.check_writable(Path(args.output).parent / "x", "--output")
    options = ["--runner", args.runner, *beam_args]
    if args.runner == "DirectRunner" and not any(a.startswith("--direct_running_mode") for a in beam_args):
        options += ["--direct_running_mode", "multi_processing"]
    if args.runner == "DirectRunner" and not any(a.startswith("--direct_num_workers") for a in beam_args):
        options += ["--direct_num_workers", "2"]
    version_dir = str(inputs.version_dir.resolve())
    print(f"model: {version_dir}; {len(files)} input file(s); runner {args.runner}", file=sys.stderr)

    with beam.Pipeline(options=PipelineOptions(options)) as pipeline:
        chunks = (pipeline | "Files" >> beam.Create(files) | "Reshuffle files" >> beam.Reshuffle()
                  | "Read" >> beam.FlatMap(ReadChunks(args.text_col, args.chunk_size)).with_outputs(ERRORS, main="ok"))
        prepared = (chunks.ok | "Spread chunks" >> beam.Reshuffle()
                    | "Prepare" >> beam.FlatMap(Prepare(version_dir, args.text_col)).with_outputs(ERRORS, main="ok"))
        (prepared.ok
         | "Predict" >> RunInference(model_handler(version_dir, inputs.input_name,
                                                   inputs.metadata.get("input_format") == "raw", args.batch_size))
         | "Format" >> beam.Map(to_json(inputs.label_names, args.text_col))
         | "Write" >> beam.io.WriteToText(f"{args.output}-predictions", file_name_suffix=".jsonl"))
        ((chunks[ERRORS], prepared[ERRORS]) | "Errors" >> beam.Flatten()
         | "Format errors" >> beam.Map(lambda e: json.dumps(e, ensure_ascii=False))
         | "Write errors" >> beam.io.WriteToText(f"{args.output}-errors", file_name_suffix=".jsonl"))
    print(f"wrote {args.output}-predictions-*.jsonl and {args.output}-errors-*.jsonl")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
