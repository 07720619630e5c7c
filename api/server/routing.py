"""A route table that also records each route's roles and models, for auth and OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC: tuple[str, ...] = ()
READERS = ("admin", "submitter", "viewer")
PRODUCERS = ("admin", "submitter")
WORKERS = ("admin", "worker")
ADMIN = ("admin",)
REGISTRATION = "registration"  # a one-time registration token (or admin) may call


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
    query: dict[str, str] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    sse: bool = False  # answers text/event-stream; a stream ticket may stand in for a token
    also: tuple[int, ...] = ()  # other success statuses, with the same body as ``status``
    raw_body: bool = False  # takes raw bytes of any Content-Type, streamed (no size limit here)
    raw_response: bool = False  # answers raw bytes of the stored Content-Type


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
        query: dict[str, str] | None = None,
        errors: tuple[int, ...] = (),
        sse: bool = False,
        also: tuple[int, ...] = (),
        raw_body: bool = False,
        raw_response: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            spec = RouteSpec(method, path, handler, roles, summary, tag, body, response, status,
                             query or {}, errors, sse, also, raw_body, raw_response)
            self.specs.append(spec)
            self._by_handler[handler] = spec
            return handler

        return register

    def spec_for(self, handler: Handler) -> RouteSpec | None:
        return self._by_handler.get(handler)

    def install(self, app: web.Application) -> None:
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, spec.handler)


router = Router()
