"""Client for models served by TF Serving (REST, or gRPC with the optional tensorflow-serving-api).

    python -m sentiment_tf.client --export saved_models/lstm --url http://localhost:8501 --name lstm "这家酒店很干净"

    from sentiment_tf.serving.client import ServingClient
    client = ServingClient("http://localhost:8501", "lstm", export="saved_models/lstm")
    client.predict(["这家酒店很干净", "太差了"]).labels      # ['正面', '负面']

TF Serving runs the graph only, and segmentation cannot run in a graph: for word-level LSTM models
the client segments text with exactly the jieba settings recorded in the export (version, HMM flag,
user dictionary — refused on mismatch), so callers send raw Chinese text. BERT exports take raw text
(their graph cleans and tokenizes). The export directory is the same one TF Serving loads (or a copy);
outputs are mapped back to its label names.
"""

from __future__ import annotations

import argparse
import os
import sys

from sentiment_tf.core.errors import run_cli
from sentiment_tf.serving.client import GrpcServingClient, ServingClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentiment_tf.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="+", help="Texts to classify.")
    parser.add_argument("--export", required=True, help="The export directory the server loaded (or a copy).")
    parser.add_argument("--url", default="http://localhost:8501", help="REST address (or host:port with --grpc).")
    parser.add_argument("--name", required=True, help="Model name on the server.")
    parser.add_argument("--version", type=int, help="Pin a model version.")
    parser.add_argument("--grpc", action="store_true", help="Use gRPC (--url host:8500).")
    parser.add_argument("--no-segment", dest="segment", action="store_false", default=None,
                        help="Send raw text (for `python -m sentiment_tf.serve`, which segments itself).")
    parser.add_argument("--api-key", default=os.environ.get("SENTIMENT_TF_API_KEY"),
                        help="Key for `sentiment_tf.serve --api-key` [default: $SENTIMENT_TF_API_KEY].")
    args = parser.parse_args(argv)
    if args.grpc:
        client = GrpcServingClient(args.url, args.name, args.export, version=args.version, segment=args.segment)
    else:
        client = ServingClient(args.url, args.name, args.export, version=args.version, segment=args.segment,
                               api_key=args.api_key)
    result = client.predict(args.texts)
    for text, label, probs in zip(args.texts, result.labels, result.probabilities):
        print(f"{label}\t{probs.max():.4f}\t{text}")
    return 0


def cli() -> None:
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
