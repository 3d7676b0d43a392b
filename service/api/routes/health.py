"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Health}})
def ready(request: Request) -> JSONResponse:
    """The database answers (503 otherwise)."""
    try:
        with request.app.state.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"
        body = Health(status="unavailable", detail={"database": type(exc).__name__})
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return JSONResponse(Health(status="ready", detail={"database": "ok"}).model_dump())
