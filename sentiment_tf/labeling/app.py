"""The HTTP app behind `python -m sentiment_tf.label`: the page (one file, no CDN) and its JSON API.

    GET  /                     the page
    GET  /api/state            labels, progress, the adaptation's status
    POST /api/next             {"session", "annotator"} → the text this browser shows
    POST /api/label            {"session", "annotator", "id", "label"} → the next text
    POST /api/skip             {"session", "annotator", "id"} → the next text
    POST /api/undo             {"session", "annotator"} → the annotator's last labelled text, again
    GET  /api/explain/{id}     the shown text's attributions (null while they are computed)
    POST /api/adapt            finetune on the labels so far, in the background
    GET  /api/adapt            its progress, then the before/after report

Every error is ``{"error": message}`` with a 4xx status (the page shows the message).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from sentiment_tf.labeling.session import LabelSession, Refused
from sentiment_tf.serving.app import add_error_handlers, json_body

SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_ANNOTATOR = 40


def page_html() -> str:
    return resources.files("sentiment_tf.labeling").joinpath("page.html").read_text(encoding="utf-8")


async def read_body(request: Request, *fields: str) -> dict[str, Any]:
    """The JSON object of a request with ``fields`` checked: ``session`` (the page's id for its tab),
    ``annotator`` (a name), ``id`` (a pool index), ``label`` (a string)."""
    body = json_body(await request.body())
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    for name in fields:
        if name not in body:
            raise Refused(400, f"missing {name!r} in the request body")
    if "session" in fields and not (isinstance(body["session"], str) and SESSION.match(body["session"])):
        raise Refused(400, "'session' must be 8–64 letters, digits, '-' or '_' (the page makes one per tab)")
    if "annotator" in fields:
        name = body["annotator"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_ANNOTATOR \
                or any(ord(c) < 32 for c in name):
            raise Refused(400, f"'annotator' must be a name of 1–{MAX_ANNOTATOR} characters")
        body["annotator"] = name.strip()
    if "id" in fields and (not isinstance(body["id"], int) or isinstance(body["id"], bool)):
        raise Refused(400, "'id' must be the integer id of the text shown")
    if "label" in fields and not isinstance(body["label"], str):
        raise Refused(400, "'label' must be a string: one of the model's labels")
    return body


def create_app(session: LabelSession, budget: int) -> FastAPI:
    app = FastAPI(title="sentiment_tf label", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    add_error_handlers(app)

    @app.exception_handler(Refused)
    async def refused(_: Request, err: Refused) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-store"})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/api/state")
    async def state() -> JSONResponse:
        return JSONResponse({"labels": session.store.label_names, "budget": budget,
                             "progress": await run_in_threadpool(session.progress),
                             "adaptation": session.adaptation.status() if session.adaptation else None})

    # What a page does to its text: each route reads the fields the session's method takes, in order.
    actions = {"next": (session.current, ("session", "annotator")),
               "label": (session.label, ("session", "annotator", "id", "label")),
               "skip": (session.skip, ("session", "annotator", "id")),
               "undo": (session.undo, ("session", "annotator"))}
    for name, (method, fields) in actions.items():
        def route(method=method, fields=fields) -> Any:
            async def act(request: Request) -> JSONResponse:
                body = await read_body(request, *fields)
                return JSONResponse(await run_in_threadpool(method, *(body[f] for f in fields)))
            return act

        app.add_api_route(f"/api/{name}", route(), methods=["POST"])

    @app.get("/api/explain/{index}")
    async def explain(index: int) -> JSONResponse:
        return JSONResponse({"id": index, "explanation": session.explanation(index)})

    def adaptation() -> Any:
        if session.adaptation is None:
            raise Refused(404, "adaptation is off for this page (--no-adapt)")
        return session.adaptation

    @app.post("/api/adapt")
    async def adapt() -> JSONResponse:
        job = adaptation()
        with session.lock:
            labelled = len(session.store.rows)
        if labelled == 0:
            raise Refused(409, "no labels yet: label some texts first")
        await run_in_threadpool(job.start, labelled)
        return JSONResponse(job.status(), status_code=202)

    @app.get("/api/adapt")
    async def adapt_status() -> JSONResponse:
        return JSONResponse(adaptation().status())

    return app
