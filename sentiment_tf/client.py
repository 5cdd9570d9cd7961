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
import dataclasses
import os

from sentiment_tf.core import config as config_lib
from sentiment_tf.core.config import option, parse_configs, require
from sentiment_tf.core.errors import entry_point
from sentiment_tf.serving.client import GrpcServingClient, ServingClient


@dataclasses.dataclass
class ClientConfig:
    """Which server and model to ask, and what."""

    texts: list[str] = option("Texts to classify.", positional="+", default_factory=list)
    export: str = option("The export directory the server loaded (or a copy).", default="")
    url: str = option("REST address (or host:port with --grpc).", default="http://localhost:8501")
    name: str = option("Model name on the server.", default="")
    version: int | None = option("Pin a model version.", default=None)
    grpc: bool = option("Use gRPC (--url host:8500).", default=False)
    segment: bool | None = option("--no-segment: send raw text (for `python -m sentiment_tf.serve`, which segments "
                                  "itself); default: segment when the export takes segmented text.", default=None)
    api_key: str | None = option("Key for `sentiment_tf.serve --api-key` [$SENTIMENT_TF_API_KEY when not given].",
                                 default=None)

    def __post_init__(self) -> None:
        require(self, "export", "name")
        self.api_key = self.api_key or os.environ.get("SENTIMENT_TF_API_KEY")


def build_parser() -> argparse.ArgumentParser:
    return config_lib.build_parser("client", __doc__, ClientConfig)


def main(argv: list[str] | None = None) -> int:
    (args,), _ = parse_configs(build_parser(), argv, (ClientConfig,))
    if args.grpc:
        client = GrpcServingClient(args.url, args.name, args.export, version=args.version, segment=args.segment)
    else:
        client = ServingClient(args.url, args.name, args.export, version=args.version, segment=args.segment,
                               api_key=args.api_key)
    result = client.predict(args.texts)
    for text, label, probs in zip(args.texts, result.labels, result.probabilities):
        print(f"{label}\t{probs.max():.4f}\t{text}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    cli()
