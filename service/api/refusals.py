"""What the API answers when it refuses a request, as OpenAPI ``responses``.

Every refusal is ``{"detail": "<why, in words>"}`` with a 4xx or 503 status; a 422 from
request validation carries FastAPI's list of field errors instead (or one message, see
``service.api.app._document_string_422``) and FastAPI documents it itself. Routers declare
the refusals their dependencies can raise (a token check, an owner check); routes add
their own, so a client generated from the document knows every status it may get.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Refusal(BaseModel):
    """The body of a refused request."""

    detail: str = Field(description="Why the request was refused, in words.")


_WHY = {
    400: "The request is well formed but cannot be acted on (the message says why).",
    401: "Missing, unknown or revoked API token.",
    403: "The token may not do this (admin-only routes; a study needs a tenant's token).",
    404: "No such resource, or one that belongs to another tenant.",
    409: "The current state of the study, trial or tenant does not allow this.",
    413: "The request body is over the size limit.",
    503: "The database is unavailable; nothing was written. Retry after Retry-After seconds.",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given refusal statuses."""
    return {code: {"model": Refusal, "description": _WHY[code]} for code in codes}


# What a router's shared dependencies can answer.
AUTHENTICATED = refusals(401, 503)
ADMIN_ONLY = refusals(401, 403, 503)
OWNED = refusals(404)
