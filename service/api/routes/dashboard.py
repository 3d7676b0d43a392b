"""The web dashboard: static pages under ``/ui`` that read the JSON API only.

``service/web`` holds plain HTML, CSS and JavaScript (no build step, nothing from a
CDN); the plots are SVG drawn by ``web/plot.js``. ``/`` redirects to the studies list,
``/favicon.ico`` to the icon.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
UI_PATH = "/ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """The dashboard's studies list."""
    return RedirectResponse(f"{UI_PATH}/")


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    """The dashboard's icon, for browsers that ask the site root for one anyway (Chrome
    does on some loads, despite the pages' ``<link rel="icon">``; a 404 there is a console
    error on every page)."""
    return RedirectResponse(f"{UI_PATH}/favicon.svg")


def mount_dashboard(app: FastAPI) -> None:
    """Serve ``service/web`` at ``/ui`` (``index.html`` for ``/ui/``) and redirect ``/``."""
    app.mount(UI_PATH, StaticFiles(directory=WEB_DIR, html=True), name="ui")
    app.include_router(router)
