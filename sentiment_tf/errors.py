"""User-facing errors and the CLI wrapper that turns them into one line + exit code 2."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input or environment, with a message that says what to do.

    The CLI prints ``error: <message>`` on one line and exits with code 2; library callers can
    catch it like any exception.
    """


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Runs a CLI ``main`` and maps :class:`UserError` / Ctrl-C to one line and an exit code."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        # Training keeps a backup every epoch; say how to pick it up again.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
