"""User-facing errors and the CLI wrapper that turns them into one line + exit code 2."""

from __future__ import annotations

import contextlib
import errno
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

EXIT_USER_ERROR = 2
# Writing failed for a reason the user fixes (space, permissions, a read-only mount), not a bug.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to do.

    The CLI prints ``error: <message>`` on one line and exits with code 2; library callers can
    catch it like any exception.
    """


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Runs a CLI ``main`` and maps :class:`UserError` / Ctrl-C to one line and an exit code."""
    quiet_native_logs(verbose="--verbose" in (sys.argv[1:] if argv is None else argv))
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        print(f"error: cannot write {err.filename or 'a file'}: {err.strerror}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        # Training keeps a backup every epoch; say how to pick it up again.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def entry_point(main: Callable[[list[str] | None], int | None]) -> Callable[[], None]:
    """A command's console entry point, ``cli = entry_point(main)``: ``main`` on ``sys.argv`` through
    :func:`run_cli`, for ``python -m sentiment_tf.<command>`` and the scripts pyproject.toml installs."""

    def cli() -> None:
        run_cli(main, sys.argv[1:])

    return cli


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to ..." per export
        # absl's INFO: e.g. a BERT export's "input name(s) 20569, … with unsupported characters" lines
        logging.getLogger("absl").setLevel(logging.WARNING)


def quiet_native_logs(verbose: bool) -> None:
    """Hides TensorFlow's C++ start-up lines (oneDNN notice, CUDA probing, ``cuInit`` errors on CPU
    machines) unless ``--verbose``; a ``TF_CPP_MIN_LOG_LEVEL`` the user set wins.

    Abseil prints the start-up lines before its log level applies, so they are caught by sending
    file descriptor 2 elsewhere while ``tensorflow`` is imported (and replayed if the import fails).
    """
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` (once, whoever imports it first) with native stderr captured."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def quiet_exec(module: object) -> None:
                with _native_stderr_captured():
                    exec_module(module)

            spec.loader.exec_module = quiet_exec  # type: ignore[method-assign]
        return spec


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
