"""The FastAPI application factory: ``uvicorn --factory service.api.app:create_app``.

Nothing is built at import. The API process imports no torch and no trainer: it reads
and writes the store, hands out buffered proposals and sends tasks by name.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from service.api.observability import install_observability
from service.api.routes import admin, health, imports, queues, results, studies, trials
from service.api.routes.dashboard import mount_dashboard
from service.config import Settings, get_settings
from service.domain import (
    InvalidTransitionError,
    StudyNotFoundError,
    TrialNotFoundError,
    describe_errors,
)
from service.logs import configure_logging
from service.orchestration.ask_latency import AskLatencyLog
from service.orchestration.proposals import ControlProposals, InlineProposals
from service.reads.views import FrontCache
from service.storage import tenants
from service.storage.db import make_engine, make_sessionmaker, migrate
from service.storage.tokens import hash_token
from workers.heartbeat import HeartbeatStore


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="scaletune",
        version="0.1.0",
        description="Cost-aware Bayesian hyperparameter scaling as a service.",
        lifespan=_release_on_shutdown,
    )
    engine = make_engine(settings.database_url)
    app.state.db_engine = engine
    if run_migrations:
        migrate(engine)
    app.state.settings = settings
    admin_token = settings.admin_token
    app.state.admin_token_hash = (
        None if admin_token is None else hash_token(admin_token.get_secret_value())
    )
    app.state.owners = tenants.Owners()  # studies' and trials' tenants, read once
    app.state.sessions = make_sessionmaker(engine)
    app.state.read_sessions = make_sessionmaker(engine, read_only=True)
    app.state.fronts = FrontCache()
    app.state.proposals = (
        InlineProposals(sessions=app.state.sessions, settings=settings)
        if settings.proposals == "inline"
        else ControlProposals(sessions=app.state.sessions, settings=settings)
    )
    app.state.heartbeats = HeartbeatStore.from_url(
        settings.heartbeat_url, prefix=settings.heartbeat_prefix
    )
    app.state.ask_log = AskLatencyLog.from_url(
        settings.broker_url, prefix=settings.heartbeat_prefix
    )
    for module in (health, imports, studies, trials, queues, results, admin):
        app.include_router(module.router)
    _add_error_handlers(app)
    _document_string_422(app)
    _limit_body_size(app, settings.max_body_bytes)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    install_observability(app)
    mount_dashboard(app)
    return app


@asynccontextmanager
async def _release_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, close what the app holds open: the broker and Redis connections and
    the database pool (an app built and stopped in one process, as tests and embedded
    servers do, would otherwise leave open connections for the garbage collector)."""
    yield
    app.state.proposals.close()
    app.state.heartbeats.client.close()
    app.state.ask_log.client.close()
    app.state.db_engine.dispose()


def _add_error_handlers(app: FastAPI) -> None:
    def handler(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def respond(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)

        return respond

    app.add_exception_handler(StudyNotFoundError, handler(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(TrialNotFoundError, handler(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(InvalidTransitionError, handler(status.HTTP_409_CONFLICT))
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(ValidationError, _unloadable)
    app.add_exception_handler(RequestValidationError, _invalid_request)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, except that the echoed input may hold NaN or Infinity (the very
    values refused), which strict JSON cannot carry: they are echoed as strings."""
    errors = jsonable_encoder(exc.errors())  # type: ignore[attr-defined]
    return JSONResponse(
        {"detail": _json_safe(errors)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


def _document_string_422(app: FastAPI) -> None:
    """A 422 carries FastAPI's list of field errors, or one message (a rule that no field
    states, e.g. an unknown objective): the published schema says both."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            error = spec.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if error is not None:
                listed = error["properties"]["detail"]
                error["properties"]["detail"] = {
                    "anyOf": [listed, {"type": "string"}],
                    "title": "Detail",
                }
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


async def _unloadable(_: Request, exc: Exception) -> JSONResponse:
    """A pydantic ValidationError that escapes a route is stored data that no longer
    loads (a request's own are RequestValidationError): a study whose spec a rule added
    since refuses. Its state, not the request, is at fault: 409, saying why."""
    why = describe_errors(exc)  # type: ignore[arg-type]
    return JSONResponse(
        {"detail": f"stored data no longer loads: {why}"}, status_code=status.HTTP_409_CONFLICT
    )


RETRY_AFTER_SECONDS = 5


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    """A lost database connection is the client's cue to retry, not a server bug (500);
    the request's unit of work was rolled back, so nothing of it was written."""
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _limit_body_size(app: FastAPI, max_bytes: int) -> None:
    # Added first, so innermost: its error must reach the route, not a middleware's task.
    app.add_middleware(_BodyLimit, max_bytes=max_bytes)


class _BodyLimit:
    """Request bodies over ``max_bytes`` get 413: at once when Content-Length says so;
    a body sent without it (chunked) is counted as it is read and refused as soon as it
    passes the limit (FastAPI re-raises an HTTPException from body reading as is).
    Plain ASGI, not ``@app.middleware``: that wrapper costs every request a task and a
    memory stream."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(
                {"detail": f"request body over {self.max_bytes} bytes"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"request body over {self.max_bytes} bytes"
                )
            return message

        await self.app(scope, counted, send)
