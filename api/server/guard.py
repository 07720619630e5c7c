"""CORS for allow-listed browser origins, a 429 for clients that keep presenting bad tokens, and
with auth off, no writes from other sites' pages."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from aiohttp import web

from leasehold.api.server.appkeys import SETTINGS
from leasehold.api.server.errors import error_response

WINDOW_SECS = 60.0
ALLOW_HEADERS = "Authorization, Content-Type, X-Worker-ID, X-Worker-Token, X-Request-ID, " \
                "Last-Event-ID"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def allowed_origins(raw: str | None) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in (raw or "").split(",") if o.strip())


@web.middleware
async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Only origins in ``LEASEHOLD_CORS_ORIGINS`` (or ``*``) get CORS headers; none by default."""
    origin = request.headers.get("Origin")
    allowed = allowed_origins(request.app[SETTINGS].cors_origins)
    ok = origin is not None and (origin in allowed or "*" in allowed)
    if request.method == "OPTIONS" and origin is not None and \
            "Access-Control-Request-Method" in request.headers:
        if not ok:
            return error_response(403, "forbidden", "origin not allowed", request)
        return web.Response(status=204, headers=_cors_headers(origin, preflight=True))
    response: web.StreamResponse = await handler(request)
    if ok and origin is not None and not response.prepared:
        response.headers.update(_cors_headers(origin, preflight=False))
    return response


def _cors_headers(origin: str, preflight: bool) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
               "Access-Control-Expose-Headers": "X-Request-ID, Retry-After"}
    if preflight:
        headers.update({"Access-Control-Allow-Methods": ALLOW_METHODS,
                        "Access-Control-Allow-Headers": ALLOW_HEADERS,
                        "Access-Control-Max-Age": "600"})
    return headers


class FailureLimiter:
    """Counts 401s per client address in a fixed window; past the limit the address gets 429."""

    def __init__(self, per_window: int, window_secs: float = WINDOW_SECS) -> None:
        self.per_window = per_window
        self.window_secs = window_secs
        self._windows: dict[str, tuple[float, int]] = {}

    def retry_after(self, client: str, now: float) -> float:
        start, count = self._windows.get(client, (now, 0))
        if now - start >= self.window_secs or count < self.per_window:
            return 0.0
        return self.window_secs - (now - start)

    def record(self, client: str, now: float) -> None:
        start, count = self._windows.get(client, (now, 0))
        if now - start >= self.window_secs:
            start, count = now, 0
        self._windows[client] = (start, count + 1)
        if len(self._windows) > 100_000:  # forget stale windows rather than grow without bound
            self._windows = {k: v for k, v in self._windows.items()
                             if now - v[0] < self.window_secs}


LIMITER = web.AppKey("failure_limiter", FailureLimiter)


@web.middleware
async def failure_limit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Only failed credentials count, and past the limit only they are refused: a valid token
    always goes through, so one guesser behind a shared address locks no one else out. A request
    that presents no credential at all guesses nothing: it always gets its plain 401."""
    response: web.StreamResponse = await handler(request)
    if response.status != 401 or not presents_credential(request):
        return response
    limiter = request.app[LIMITER]
    client = request.remote or "unknown"
    now = time.monotonic()
    wait = limiter.retry_after(client, now)
    limiter.record(client, now)
    if wait > 0:
        return error_response(429, "rate_limited", "too many failed authentications; retry "
                              "later", request, headers={"Retry-After": str(int(wait) + 1)})
    return response


def presents_credential(request: web.Request) -> bool:
    """A bearer or worker token, or a stream ticket: something that could be a guess."""
    return any(request.headers.get(name, "").strip() for name in
               ("Authorization", "X-Worker-Token")) or bool(request.query.get("ticket"))


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def refuse_cross_site(request: web.Request) -> web.Response | None:
    """With auth off, any web page the operator visits could call the API: a request from
    another origin is refused, and a write must say it is JSON (a page can send text/plain or
    a form cross-site without asking first, never application/json). None lets it through."""
    settings = request.app[SETTINGS]
    if _loopback(settings.host) and not _loopback(request.url.host or ""):
        # A page can rebind its own name to 127.0.0.1 and so look same-origin; a server that
        # listens on loopback only answers requests that name a loopback host.
        return error_response(403, "host_forbidden", "with auth off, a loopback server "
                              "answers only requests for localhost or a loopback address",
                              request)
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(request, origin, settings.cors_origins):
        return error_response(403, "origin_forbidden", "with auth off, only this server's own "
                              "pages and LEASEHOLD_CORS_ORIGINS may call the API", request)
    if request.method in WRITES and not _json_write(request):
        return error_response(415, "unsupported_media_type", "with auth off, a request body "
                              "must be sent as Content-Type: application/json", request)
    return None


def _loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _origin_allowed(request: web.Request, origin: str, cors_origins: str | None) -> bool:
    allowed = allowed_origins(cors_origins)
    own = f"{request.scheme}://{request.host}"
    return origin.rstrip("/") in allowed or "*" in allowed or origin == own


def _json_write(request: web.Request) -> bool:
    """A JSON body (YAML for a workflow definition), or no body at all (a browser sends a
    body-less write cross-site only with an Origin header, which is checked first)."""
    if not request.body_exists or request.content_length == 0:
        return True
    kind = request.content_type
    if kind == "application/json":
        return True
    if request.method == "PUT" and "/artifacts/" in request.path:
        return True  # raw bytes; a cross-site PUT is always preflighted, so CORS already decided
    return kind in YAML_TYPES and request.method == "POST" and request.path == "/api/workflows"
