"""Queues, tokens, health and version routes."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel

from leasehold import __version__
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.errors import error_response
from leasehold.api.server.http import principal, read_model, respond
from leasehold.api.server.routing import ADMIN, PUBLIC, READERS, router
from leasehold.api.wire import (
    Deleted,
    Health,
    RegistrationTokenIssued,
    RegistrationTokenRequest,
    TokenIssued,
    TokenRequest,
)
from leasehold.scheduler import errors
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.models import QueueLimits, QueueStats


@router.route("GET", "/api/queues", roles=READERS, tag="queues", response=list[QueueStats],
              summary="Every queue with its counts, limits and oldest ready age (a token limited "
              "to some queues sees those)", errors=(401, 403))
async def list_queues(request: web.Request) -> web.Response:
    scheduler, caller = request.app[SERVICES].scheduler, principal(request)
    stats = [await scheduler.queue_stats(name) for name in await scheduler.queues()
             if caller.may(name)]
    return respond(stats if stats else [])


def _queue(request: web.Request) -> str:
    name = request.match_info["queue"]
    if not QUEUE_NAME.match(name):
        raise errors.InvalidArgument("queue must match " + QUEUE_NAME.pattern)
    principal(request).require(name)
    return name


@router.route("GET", "/api/queues/{queue}", roles=READERS, tag="queues", response=QueueStats,
              summary="One queue's counts and limits", errors=(400, 401, 403))
async def get_queue(request: web.Request) -> web.Response:
    return respond(await request.app[SERVICES].scheduler.queue_stats(_queue(request)))


@router.route("PUT", "/api/queues/{queue}", roles=ADMIN, tag="queues", body=QueueLimits,
              response=QueueStats, summary="Pause/resume a queue, set max_running, claim_rate "
              "(alias rate_limit) and submit_rate",
              errors=(400, 401, 403))
async def put_queue(request: web.Request) -> web.Response:
    limits = await read_model(request, QueueLimits)
    return respond(await request.app[SERVICES].scheduler.set_queue(_queue(request), limits))


@router.route("POST", "/api/tokens", roles=ADMIN, tag="tokens", body=TokenRequest,
              response=TokenIssued, status=201,
              summary="Create an API token (shown once; stored as SHA-256)", errors=(400, 401, 403))
async def create_token(request: web.Request) -> web.Response:
    body = await read_model(request, TokenRequest)
    token_id, token = await request.app[SERVICES].tokens.create_api_token(body.role, body.name,
                                                                          body.queues)
    return respond(TokenIssued(id=token_id, token=token, role=body.role), 201)


@router.route("DELETE", "/api/tokens/{id}", roles=ADMIN, tag="tokens", response=Deleted,
              summary="Delete an API token; it fails at once", errors=(401, 403, 404))
async def delete_token(request: web.Request) -> web.Response:
    await request.app[SERVICES].tokens.delete_api_token(request.match_info["id"])
    return respond(Deleted())


@router.route("POST", "/api/registration-tokens", roles=ADMIN, tag="tokens",
              body=RegistrationTokenRequest, response=RegistrationTokenIssued, status=201,
              summary="Create a registration token for `uses` workers, valid ttl_secs (≤ 1 day)",
              errors=(400, 401, 403))
async def create_registration_token(request: web.Request) -> web.Response:
    body = await read_model(request, RegistrationTokenRequest, optional=True)
    token_id, token, expires = await request.app[SERVICES].tokens.create_registration_token(
        body.ttl_secs, body.uses, body.queues)
    return respond(RegistrationTokenIssued(id=token_id, token=token, expires_at_ms=expires), 201)


@router.route("GET", "/healthz", roles=PUBLIC, tag="operations", response=Health,
              summary="Liveness: the process serves requests")
async def healthz(request: web.Request) -> web.Response:
    return respond(Health(status="ok"))


@router.route("GET", "/readyz", roles=PUBLIC, tag="operations", response=Health,
              summary="Readiness: Redis answers and the scripts are loaded", errors=(503,))
async def readyz(request: web.Request) -> web.Response:
    try:
        ready = await request.app[SERVICES].ready()
    except errors.BACKEND_ERRORS:
        ready = False
    if not ready:
        return error_response(503, "unavailable", "Redis is unreachable or scripts are missing",
                              request, headers={"Retry-After": "1"})
    return respond(Health(status="ready"))


class VersionInfo(BaseModel):
    version: str
    commit: str | None = None


@functools.cache
def build_commit() -> str | None:
    """LEASEHOLD_COMMIT (the image sets it at build time), else the checkout's git HEAD."""
    if commit := os.environ.get("LEASEHOLD_COMMIT", "").strip():
        return commit
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None


@router.route("GET", "/version", roles=PUBLIC, tag="operations", response=VersionInfo,
              summary="The running version (and commit, when known)")
async def version(request: web.Request) -> web.Response:
    info = VersionInfo(version=__version__, commit=build_commit())
    return respond(info.model_dump(exclude_none=True))
