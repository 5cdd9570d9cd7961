"""What bounds one HTTP client's cost to the service: body size, request read time, API key, open
connections.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``); it has no limit on a request body,
on a connection that opens and never sends its request, nor on open connections other than its
``limit_concurrency``, which counts idle ones too (so idle sockets could lock everyone out). Those are
here, as a pure ASGI middleware (it sees the body as it streams) and an h11 protocol subclass. The
work in progress is bounded by the app (see ``ModelSlot.admit``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


async def send_error(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class LimitExceeded(Exception):
    """Raised from ``receive`` inside the app: the app's error handler answers ``status``/``message``
    (Starlette's error middleware would otherwise make it a 500)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientDisconnected(Exception):
    """The client hung up before its request body arrived: nobody to answer, and not the server's fault
    (counted as status 499 in the metrics, as nginx logs it)."""


class RequestLimits:
    """ASGI middleware: a body over ``max_body_bytes`` is a 413 — from ``Content-Length`` before any of
    it is read, else as soon as the streamed bytes pass the limit; a body not received within
    ``read_timeout`` seconds is a 408; with ``api_key``, a request without it is a 401 (``public_paths``
    excepted: ``/healthz`` for load balancers; a page that holds no data and sends the key itself)."""

    def __init__(self, app: Any, max_body_bytes: int, read_timeout: float, api_key: str | None = None,
                 public_paths: tuple[str, ...] = ("/healthz",)):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.public_paths = public_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope.get("path") not in self.public_paths and not self._authorised(headers):
            return await send_error(send, 401, "missing or wrong API key; send it as 'Authorization: Bearer KEY' or "
                                               "'X-API-Key: KEY'", [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await send_error(send, 400, "Content-Length must be a number of bytes")
            if int(declared) > self.max_body_bytes:
                return await send_error(send, 413, f"request body of {int(declared)} bytes; the limit is "
                                                   f"{self.max_body_bytes} (--max-body-bytes)")
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        started = body_done = gone = False

        async def limited_receive() -> dict:
            nonlocal received, body_done, gone
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise LimitExceeded(408, f"request body not received within {self.read_timeout:g} s "
                                         "(--timeout-request)") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise LimitExceeded(413, f"request body over {self.max_body_bytes} bytes (--max-body-bytes)")
            elif message["type"] == "http.disconnect" and not body_done:
                gone = True
                raise ClientDisconnected()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if gone:
                return  # the app's answer to the hang-up (a 500 from Starlette's error middleware): nobody to read it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except LimitExceeded as err:
            if started:
                raise
            await send_error(send, err.status, err.message)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        """Either header carrying the key is enough (an empty or wrong one beside it does not spoil it)."""
        auth = headers.get(b"authorization", b"")
        given = [headers.get(b"x-api-key", b"").strip(), auth[7:].strip() if auth[:7].lower() == b"bearer " else b""]
        return any(hmac.compare_digest(g, self.api_key) for g in given if g)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers have not arrived
    within ``REQUEST_TIMEOUT`` seconds (from connecting, or from the previous response), so idle or
    half-sent connections cannot pile up; past ``MAX_CONNECTIONS`` open connections, a new one closes
    the longest-idle connection that has no request in progress (as nginx reuses idle keep-alive
    connections), so idle sockets never lock a working client out. Set by :func:`protocol_with_timeout`."""

    REQUEST_TIMEOUT = 15.0
    MAX_CONNECTIONS = 4096

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._request_timer = self.loop.call_later(self.REQUEST_TIMEOUT, self._close_if_waiting)
        if len(self.connections) > self.MAX_CONNECTIONS:
            idle = [c for c in self.connections if c is not self and isinstance(c, TimedH11Protocol) and c._waiting()]
            victim = min(idle, key=lambda c: c._idle_since) if idle else self  # all busy: refuse the newcomer
            victim.transport.close()
            victim.connections.discard(victim)  # counted out now, not when the close completes

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()
        self._restart_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_timer.cancel()
        super().connection_lost(exc)

    def _restart_timer(self) -> None:
        self._request_timer.cancel()
        self._request_timer = self.loop.call_later(self.REQUEST_TIMEOUT, self._close_if_waiting)

    def _waiting(self) -> bool:
        """No request in progress: waiting for the next one's headers (or for its first byte)."""
        return self.cycle is None or self.cycle.response_complete

    def _close_if_waiting(self) -> None:
        if self._waiting() and not self.transport.is_closing():
            self.transport.close()


def protocol_with_timeout(seconds: float, max_connections: int) -> type[H11Protocol]:
    return type("TimedH11Protocol", (TimedH11Protocol,), {"REQUEST_TIMEOUT": seconds, "MAX_CONNECTIONS": max_connections})
