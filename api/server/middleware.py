"""Request ids, one structured log line per request, and authentication with roles."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import structlog
from aiohttp import web

from leasehold.api.server.appkeys import ROUTER, SERVICES, SETTINGS
from leasehold.api.server.errors import error_response
from leasehold.api.server.guard import refuse_cross_site
from leasehold.api.server.http import PRINCIPAL, REGISTRATION_TOKEN, REQUEST_ID
from leasehold.api.server.metrics import observe_request
from leasehold.api.server.routing import REGISTRATION, RouteSpec
from leasehold.scheduler.auth import ANONYMOUS_ADMIN, Principal

log = structlog.get_logger("leasehold.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else secrets.token_hex(16)
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-ID"] = request_id
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away first
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        seconds = time.perf_counter() - started
        observe_request(route, request.method, status, seconds)
        log.info("request", method=request.method, route=route, status=status,
                 duration_ms=round(seconds * 1000, 2))
        structlog.contextvars.unbind_contextvars("request_id")


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return (request.headers.get("X-Worker-Token")
            or request.headers.get("X-Agent-Token") or None)  # Stella's registration header


def _query_refused(request: web.Request, spec: RouteSpec) -> web.Response | None:
    """A query parameter the route does not document, or one given twice (each is one value),
    is refused by name rather than ignored."""
    names = {name for name, _ in request.query.items()}
    unknown = sorted(names - spec.query_names)
    if unknown:
        return error_response(400, "invalid_argument", f"unknown query parameter {unknown[0]}",
                              request, extra={"allowed": sorted(
                                  spec.query_names if spec.sse else spec.query_names - {"ticket"})})
    if len(request.query) != len(names):
        twice = sorted({name for name in names if request.query.getall(name)[1:]})
        return error_response(400, "invalid_argument",
                              f"query parameter {twice[0]} is given more than once", request)
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    spec = request.app[ROUTER].spec_for(request.match_info.handler)
    if spec is not None and request.query:
        refused = _query_refused(request, spec)
        if refused is not None:
            return refused
    if spec is None or not spec.roles:
        response: web.StreamResponse = await handler(request)
        return response
    if not request.app[SETTINGS].auth:
        refused = refuse_cross_site(request)
        if refused is not None:
            return refused
        request[PRINCIPAL] = ANONYMOUS_ADMIN
        response = await handler(request)
        return response
    token = presented_token(request)
    ticket = request.query.get("ticket")
    if token is None and ticket and spec.sse:
        from_ticket = await request.app[SERVICES].tokens.check_ticket(ticket, request.path)
        if from_ticket is None:
            return error_response(401, "unauthorized", "invalid or expired stream ticket",
                                  request)
        if from_ticket.role not in spec.roles:  # a ticket never grants more than its issuer's role
            return error_response(403, "forbidden", f"role {from_ticket.role} may not call this "
                                  "route", request)
        request[PRINCIPAL] = from_ticket
        response = await handler(request)
        return response
    if token is None:
        return error_response(401, "unauthorized", "missing token: send Authorization: Bearer "
                              "<token> (or X-Worker-ID and X-Worker-Token)", request,
                              headers={"WWW-Authenticate": "Bearer"})
    found = await request.app[SERVICES].tokens.authenticate(token)
    if (found is None and REGISTRATION in spec.roles
            and await request.app[SERVICES].tokens.is_registration_token(token)):
        request[REGISTRATION_TOKEN] = token
        response = await handler(request)
        return response
    if found is None or not _worker_header_matches(request, found):
        return error_response(401, "unauthorized", "invalid or revoked token", request,
                              headers={"WWW-Authenticate": "Bearer"})
    if found.role not in spec.roles:
        return error_response(403, "forbidden", f"role {found.role} may not call this route",
                              request)
    request[PRINCIPAL] = found
    response = await handler(request)
    return response


def _worker_header_matches(request: web.Request, found: Principal) -> bool:
    claimed = request.headers.get("X-Worker-ID")
    return claimed is None or (found.role == "worker" and claimed == found.worker_id) or (
        found.role != "worker")
