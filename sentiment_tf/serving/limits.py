"""What bounds one HTTP client's cost to the service: body size, request read time, API key.

uvicorn bounds concurrency (``limit_concurrency``), idle keep-alive connections
(``timeout_keep_alive``) and shutdown (``timeout_graceful_shutdown``); it has no limit on a request
body nor on a connection that opens and never sends its request. Those are added here, as a pure ASGI
middleware (it sees the body as it streams) and an h11 protocol subclass.
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


class RequestLimits:
    """ASGI middleware: a body over ``max_body_bytes`` is a 413 — from ``Content-Length`` before any of
    it is read, else as soon as the streamed bytes pass the limit; a body not received within
    ``read_timeout`` seconds is a 408; with ``api_key``, a request without it is a 401 (``/healthz``
    excepted, for load balancers)."""

    def __init__(self, app: Any, max_body_bytes: int, read_timeout: float, api_key: str | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.api_key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope.get("path") != "/healthz" and not self._authorised(headers):
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
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise LimitExceeded(408, f"request body not received within {self.read_timeout:g} s "
                                         "(--timeout-request)") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise LimitExceeded(413, f"request body over {self.max_body_bytes} bytes (--max-body-bytes)")
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except LimitExceeded as err:
            if started:
                raise
            await send_error(send, err.status, err.message)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given, self.api_key)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's headers have not arrived
    within ``REQUEST_TIMEOUT`` seconds (from connecting, or from the previous response), so idle or
    half-sent connections cannot pile up. Set by :func:`protocol_with_timeout`."""

    REQUEST_TIMEOUT = 15.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._request_timer = self.loop.call_later(self.REQUEST_TIMEOUT, self._close_if_waiting)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._restart_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_timer.cancel()
        super().connection_lost(exc)

    def _restart_timer(self) -> None:
        self._request_timer.cancel()
        self._request_timer = self.loop.call_later(self.REQUEST_TIMEOUT, self._close_if_waiting)

    def _close_if_waiting(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def protocol_with_timeout(seconds: float) -> type[H11Protocol]:
    return type("TimedH11Protocol", (TimedH11Protocol,), {"REQUEST_TIMEOUT": seconds})
