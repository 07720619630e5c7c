"""A route table that also records each route's roles and models, for auth and OpenAPI."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from leasehold.scheduler.models import JobStatus

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JOB_STATUSES = tuple(status.value for status in JobStatus)
# A Redis stream entry id (each part below 2^64) as the log routes accept it.
ENTRY_ID = r"^[0-9]{1,19}(-[0-9]{1,19})?$"

PUBLIC: tuple[str, ...] = ()
READERS = ("admin", "submitter", "viewer")
PRODUCERS = ("admin", "submitter")
WORKERS = ("admin", "worker")
ADMIN = ("admin",)
REGISTRATION = "registration"  # a one-time registration token (or admin) may call


@dataclass(frozen=True)
class Param:
    """A query (or header) parameter: its description, JSON schema, and whether it is needed."""

    text: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    where: str = "query"


def integer(text: str, low: int, high: int) -> Param:
    return Param(text, {"type": "integer", "minimum": low, "maximum": high})


def number(text: str, low: float, high: float) -> Param:
    return Param(text, {"type": "number", "minimum": low, "maximum": high})


def one_of(text: str, values: tuple[str, ...]) -> Param:
    return Param(text, {"type": "string", "enum": list(values)})


def matching(text: str, pattern: str, required: bool = False) -> Param:
    return Param(text, {"type": "string", "pattern": pattern}, required)


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    roles: tuple[str, ...]
    summary: str
    tag: str
    body: Any = None
    response: Any = None
    status: int = 200
    query: dict[str, str | Param] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    sse: bool = False  # answers text/event-stream; a stream ticket may stand in for a token
    also: tuple[int, ...] = ()  # other success statuses, with the same body as ``status``
    raw_body: bool = False  # takes raw bytes of any Content-Type, streamed (no size limit here)
    raw_response: bool = False  # answers raw bytes of the stored Content-Type
    yaml_body: bool = False  # ``body`` may also come as YAML (Content-Type application/yaml)
    event_stream: bool = False  # may answer text/event-stream instead (a result mode)

    @functools.cached_property
    def query_names(self) -> frozenset[str]:
        """The query parameters this route reads; any other is refused (``ticket`` is left to
        authentication, which answers 401 where a stream ticket is no credential)."""
        return frozenset({"ticket", *(name for name, given in self.query.items()
                                      if not isinstance(given, Param) or given.where == "query")})


class Router:
    """Collects routes with their metadata; ``install`` adds them to an application."""

    def __init__(self) -> None:
        self.specs: list[RouteSpec] = []
        self._by_handler: dict[Handler, RouteSpec] = {}

    def route(
        self,
        method: str,
        path: str,
        *,
        roles: tuple[str, ...],
        summary: str,
        tag: str,
        body: Any = None,
        response: Any = None,
        status: int = 200,
        query: dict[str, str | Param] | None = None,
        errors: tuple[int, ...] = (),
        sse: bool = False,
        also: tuple[int, ...] = (),
        raw_body: bool = False,
        raw_response: bool = False,
        yaml_body: bool = False,
        event_stream: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            spec = RouteSpec(method, path, handler, roles, summary, tag, body, response, status,
                             query or {}, errors, sse, also, raw_body, raw_response, yaml_body,
                             event_stream)
            self.specs.append(spec)
            self._by_handler[handler] = spec
            return handler

        return register

    def spec_for(self, handler: Handler) -> RouteSpec | None:
        return self._by_handler.get(handler)

    def allowed_methods(self, path: str) -> list[str]:
        """The methods of the most specific route template that matches ``path`` (a literal
        segment beats a parameter: /api/workers/heartbeat is not worker "heartbeat")."""
        best: tuple[int, ...] | None = None
        methods: list[str] = []
        for spec in self.specs:
            rank = _rank(spec.path, path)
            if rank is None:
                continue
            if best is None or rank > best:
                best, methods = rank, [spec.method]
            elif rank == best and spec.method not in methods:
                methods.append(spec.method)
        return sorted(methods)

    def install(self, app: web.Application) -> None:
        for spec in self.specs:
            handler = spec.handler
            if any(shadows(other.path, spec.path) for other in self.specs):
                handler = self._guarded(spec)
                self._by_handler[handler] = spec
            app.router.add_route(spec.method, spec.path, handler)

    def _guarded(self, spec: RouteSpec) -> Handler:
        """``spec.handler``, but a path that a more specific template owns gets that
        template's 405 (GET /api/workers/heartbeat is not a read of worker "heartbeat")."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            allowed = self.allowed_methods(request.path)
            if spec.method not in allowed:
                raise web.HTTPMethodNotAllowed(request.method, allowed)
            return await spec.handler(request)

        guarded.__name__ = spec.handler.__name__
        return guarded


_SEGMENT = re.compile(r"^{\w+}$")


def _rank(template: str, path: str) -> tuple[int, ...] | None:
    """None when ``template`` does not match ``path``; else 1 per literal segment, 0 per
    parameter, so the larger tuple is the more specific template."""
    want, have = template.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(have):
        return None
    rank = []
    for pattern, segment in zip(want, have, strict=True):
        if _SEGMENT.match(pattern):
            if not segment:
                return None
            rank.append(0)
        elif pattern == segment:
            rank.append(1)
        else:
            return None
    return tuple(rank)


def shadows(specific: str, general: str) -> bool:
    """Whether some path matches both templates and ``specific`` ranks above ``general``."""
    a, b = specific.strip("/").split("/"), general.strip("/").split("/")
    if len(a) != len(b) or specific == general:
        return False
    above = False
    for x, y in zip(a, b, strict=True):
        x_param, y_param = bool(_SEGMENT.match(x)), bool(_SEGMENT.match(y))
        if not x_param and not y_param and x != y:
            return False
        if x_param and not y_param:
            return False  # general is more specific here: no clean order, leave to aiohttp
        if not x_param and y_param:
            above = True
    return above


router = Router()
