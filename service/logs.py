"""Structured logs of every service process (the API and the control worker).

``configure_logging(log_format="json")`` writes one JSON object per line with the study
and trial ids of the request or task (``log_context``) or of the record's ``extra``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_log_ids: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("scaletune_log_ids", default=())
# Attributes every LogRecord has (and uvicorn's coloured copy of the message); anything
# else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Attach ids (``study_id=3, trial_id=9``) to every log record inside the block."""
    token = _log_ids.set(tuple({**dict(_log_ids.get()), **ids}.items()))
    try:
        yield
    finally:
        _log_ids.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids and ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **dict(_log_ids.get()),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _JsonHandler(logging.StreamHandler):
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(*, log_format: str, level: str = "INFO") -> None:
    """JSON lines on stderr for the root logger and uvicorn's loggers; "text" leaves
    logging as the host process (uvicorn, celery, pytest) set it up."""
    if log_format != "json":
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for uvicorn_handler in logging.getLogger(name).handlers:
            uvicorn_handler.setFormatter(JsonFormatter())
