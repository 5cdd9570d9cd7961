"""`serve`'s and `label`'s options (a module of its own: parsed, and the port taken, before the app's imports)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from sentiment_tf.core.config import option
from sentiment_tf.core.errors import UserError
from sentiment_tf.export.versions import metadata_path


@dataclasses.dataclass
class ServeConfig:
    """Models to serve and the service's limits."""

    model: list[str] = option("Model base directory (TF Serving layout, newest version served), or one version "
                              "directory (that version only: a rollback), optionally NAME=DIR; repeat for several "
                              "models. The name defaults to the model directory's name.",
                              metavar="[NAME=]DIR", default_factory=list)
    max_texts: int = option("Most texts in one request (more → 413).", at_least=1, default=256)
    max_chars: int = option("Most characters in one text (longer → 413).", at_least=1, default=5000)
    max_batch: int = option("Most texts predicted together when batching concurrent requests (large batches "
                            "pay off: an LSTM call costs mostly per time step, not per text).", at_least=1, default=1024)
    batch_chars: int = option("Most characters in one model call. Requests are cut into chunks taken in turn, so a "
                              "large request never holds up a small one for longer than about two such calls.",
                              at_least=1, default=65536)
    batch_timeout_ms: float = option("Wait up to this long for more requests to fill a batch (0: batch only what "
                                     "is already waiting).", at_least=0, default=0.0)
    segment: bool = option("TF Serving routes take raw text, and LSTM exports made before jieba ran in the graph "
                           "segment it here; --no-segment "
                           "passes instances to the graph unchanged, exactly as TF Serving does (for clients "
                           "that segment, like sentiment_tf.client). /predict always takes raw text.", default=True)
    segment_workers: int = option("Processes that segment text for LSTM exports made before jieba ran in the graph "
                                  "(jieba is pure Python, so threads "
                                  "would share one core); 0 segments in a thread of the server process.", at_least=0, default=2)
    limit_concurrency: int = option("Most prediction requests in progress (body received, waiting or predicted); "
                                    "more get 503 with Retry-After. Idle or still-sending connections do not count.",
                                    at_least=1, default=256)
    max_queued_chars: int = option("Most characters waiting for the model, over all requests in progress; a request "
                                   "that would pass it gets 503 with Retry-After (load shedding).", at_least=1,
                                   default=4_000_000)
    shutdown_timeout: float = option("On SIGTERM: stop accepting, finish requests in flight for at most this long, "
                                     "answer the rest 503 with 'Connection: close', exit 0.", at_least=0, default=10.0)
    docs: bool = option("Serve the OpenAPI docs at /docs (Swagger UI loads its scripts from a CDN).", default=False)
    poll_seconds: float = option("How often to look for new version directories (0 disables hot reload).",
                                 at_least=0, default=2.0)
    verbose: bool = option("Debug logging.", default=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise UserError("--model: give at least one exported model directory (e.g. saved_models/lstm)")

    def model_dirs(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for spec in self.model:
            name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
            path_obj = Path(path)
            target = path_obj.resolve()
            if target.name.isdigit() and metadata_path(target).is_file():
                target = target.parent  # a version directory: named after its model
            name = name or target.name
            if name in out:
                raise UserError(f"--model: two models are named {name!r}; name them with NAME=DIR")
            out[name] = path_obj
        return out


@dataclasses.dataclass
class HttpConfig:
    """Where a local HTTP service listens, what bounds one client's cost, and its API key (``serve``, ``label``)."""

    host: str = option("Interface to listen on (0.0.0.0 for all).", default="127.0.0.1")
    port: int = option("Port.", at_least=0, at_most=65535, default=8501)
    max_body_bytes: int = option("Largest request body; a bigger one is a 413, refused from its Content-Length "
                                 "before it is read.", at_least=1, default=8 * 1024 * 1024)
    timeout_request: float = option("Seconds a client has to send a request's headers (from connecting, or from "
                                    "the previous response), and then its body; the connection is closed or the "
                                    "request answered 408.", above=0, default=15.0)
    timeout_keep_alive: float = option("Seconds an idle keep-alive connection stays open (uvicorn's).", above=0,
                                       default=5.0)
    limit_connections: int = option("Most open connections; past it a new connection closes the longest-idle one "
                                    "(one with no request in progress).", at_least=1, default=4096)
    api_key: str | None = option("Require this key on every route but /healthz (header 'Authorization: Bearer "
                                 "KEY' or 'X-API-Key: KEY'). A key on the command line is visible to every user "
                                 "of the machine (ps): prefer --api-key-file or the SENTIMENT_TF_API_KEY "
                                 "environment variable.", default=None)
    api_key_file: str | None = option("Read the API key from this file's first line (see --api-key).",
                                       default=None)

    def __post_init__(self) -> None:
        if self.api_key is not None and self.api_key_file is not None:
            raise UserError("--api-key and --api-key-file: give one of them")

    def resolved_api_key(self) -> str | None:
        """The key from --api-key-file, --api-key or SENTIMENT_TF_API_KEY (None: no key); a key on the command
        line is warned about."""
        if self.api_key is not None:
            logging.getLogger("sentiment_tf.serving").warning(
                "--api-key on the command line is visible to every user of this machine (ps); prefer "
                "--api-key-file or SENTIMENT_TF_API_KEY")
        if self.api_key_file is not None:
            try:
                lines = Path(self.api_key_file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise UserError(f"--api-key-file {self.api_key_file}: cannot read it ({err.__class__.__name__})") from None
            if not lines or not lines[0].strip():
                raise UserError(f"--api-key-file {self.api_key_file}: the first line is empty; put the key there")
            return lines[0].strip()
        return self.api_key or os.environ.get("SENTIMENT_TF_API_KEY") or None
