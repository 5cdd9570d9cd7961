"""The service's life: the port taken before anything loads, and a shutdown that keeps its word.

On SIGTERM (or Ctrl-C) the server stops accepting connections, closes idle ones, lets requests in
flight finish until ``--shutdown-timeout``, then answers whatever is still unanswered ``503`` with
``Connection: close`` (a client retries elsewhere; it never sees a 500 or a reset) and exits 0.
uvicorn alone cancels the requests it cannot finish (a 500 each), waits for model calls running in
threads after its own timeout, and re-raises the signal (the process dies "killed by SIGTERM").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from typing import Any

import uvicorn

from sentiment_tf.core.errors import UserError
from sentiment_tf.serving.limits import send_error

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, taken before any model loads: a busy port is one line, not a failure after
    the models loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so (else +40 ms a response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart while old sockets are in TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: the port is in use on {host} (is another server running?); stop it "
                            "or choose another --port") from None
        if err.errno == errno.EACCES:
            raise UserError(f"--port {port}: not allowed to listen on it (ports below 1024 need privileges); "
                            "choose a port above 1024") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def connections_allowed(wanted: int) -> int:
    """Raises this process's open-file limit to fit ``wanted`` connections where the hard limit allows;
    returns how many connections fit (a socket beyond the limit would fail ``accept`` in a loop)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = 256  # model files, the log, threads' pipes
    need = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft - spare < wanted:
        allowed = max(16, soft - spare)
        log.warning("--limit-connections %d: the open-file limit (%d) allows %d", wanted, soft, allowed)
        return allowed
    return wanted


class Drain:
    """Shutdown's deadline: ``expired`` is set ``timeout`` seconds after :meth:`begin`."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.started = False
        self.expired = asyncio.Event()

    def begin(self) -> None:
        if not self.started:
            self.started = True
            log.info("shutting down: requests in flight have %g s (--shutdown-timeout)", self.timeout)
            asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        log.info("shutdown timeout reached: unanswered requests get 503")
        self.expired.set()


class DrainMiddleware:
    """ASGI middleware: a request still unanswered when the shutdown deadline passes is answered ``503``
    with ``Connection: close`` (its model call, if any, is abandoned); one whose answer has begun is let
    finish."""

    MESSAGE = "the server is shutting down; retry the request (on another instance)"

    def __init__(self, app: Any, drain: Drain):
        self.app = app
        self.drain = drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = cut = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if cut:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        expired = asyncio.ensure_future(self.drain.expired.wait())
        try:
            await asyncio.wait([task, expired], return_when=asyncio.FIRST_COMPLETED)
        finally:
            expired.cancel()
        if not task.done() and not started:
            cut = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await send_error(send, 503, self.MESSAGE, [(b"retry-after", b"1")])
        await task


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose signal handling starts :class:`Drain` and, once every connection is done,
    returns normally (exit status 0) instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, drain: Drain):
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it after the shutdown.
        if self.should_exit and self.drain.started:
            self.force_exit = True  # a second signal: stop now
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.drain.begin)
