"""The web UI: ``GET /`` serves ``static/index.html``, ``/static/`` its scripts and styles."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent.parent / "static"
# The page loads only its own files, so a script that slipped into data could not run.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)


def install(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC_DIR)
