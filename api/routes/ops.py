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
from leasehold.api.server.audit import audit
from leasehold.api.server.errors import error_response
from leasehold.api.server.http import principal, read_model, respond
from leasehold.api.server.routing import ADMIN, PUBLIC, READERS, router
from leasehold.api.server.shutdown import shutting_down
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
from leasehold.scheduler.metrics import reaper_state
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
    queue = _queue(request)
    stats = await request.app[SERVICES].scheduler.set_queue(queue, limits)
    audit(request, "queue.update", queue=queue, fields=sorted(limits.model_fields_set))
    return respond(stats)


@router.route("POST", "/api/tokens", roles=ADMIN, tag="tokens", body=TokenRequest,
              response=TokenIssued, status=201,
              summary="Create an API token (shown once; stored as SHA-256)", errors=(400, 401, 403))
async def create_token(request: web.Request) -> web.Response:
    body = await read_model(request, TokenRequest)
    token_id, token = await request.app[SERVICES].tokens.create_api_token(body.role, body.name,
                                                                          body.queues)
    audit(request, "token.create", token_id=token_id, role=body.role)
    return respond(TokenIssued(id=token_id, token=token, role=body.role), 201)


@router.route("DELETE", "/api/tokens/{id}", roles=ADMIN, tag="tokens", response=Deleted,
              summary="Delete an API token; it fails at once", errors=(401, 403, 404))
async def delete_token(request: web.Request) -> web.Response:
    await request.app[SERVICES].tokens.delete_api_token(request.match_info["id"])
    audit(request, "token.delete", token_id=request.match_info["id"])
    return respond(Deleted())


@router.route("POST", "/api/registration-tokens", roles=ADMIN, tag="tokens",
              body=RegistrationTokenRequest, response=RegistrationTokenIssued, status=201,
              summary="Create a registration token for `uses` workers, valid ttl_secs (≤ 1 day)",
              errors=(400, 401, 403))
async def create_registration_token(request: web.Request) -> web.Response:
    body = await read_model(request, RegistrationTokenRequest, optional=True)
    token_id, token, expires = await request.app[SERVICES].tokens.create_registration_token(
        body.ttl_secs, body.uses, body.queues)
    audit(request, "registration_token.create", token_id=token_id, uses=body.uses)
    return respond(RegistrationTokenIssued(id=token_id, token=token, expires_at_ms=expires), 201)


@router.route("GET", "/healthz", roles=PUBLIC, tag="operations", response=Health,
              summary="Liveness: the process serves requests")
async def healthz(request: web.Request) -> web.Response:
    return respond(Health(status="ok"))


class Readiness(BaseModel):
    status: str
    reaper_last_pass_age_secs: float | None = None


@router.route("GET", "/readyz", roles=PUBLIC, tag="operations", response=Readiness,
              summary="Readiness: Redis answers, the scripts are loaded and the process is not "
              "shutting down; reaper_last_pass_age_secs says how long ago any reaper finished "
              "a pass (null: none has run)", errors=(503,))
async def readyz(request: web.Request) -> web.Response:
    if shutting_down(request.app):
        return error_response(503, "shutting_down", "this process is shutting down",
                              request, headers={"Retry-After": "1"})
    services = request.app[SERVICES]
    try:
        ready = await services.ready()
        reaper = await reaper_state(services.scheduler)
    except errors.BACKEND_ERRORS:
        ready = False
    if not ready:
        return error_response(503, "unavailable", "Redis is unreachable or scripts are missing",
                              request, headers={"Retry-After": "1"})
    return respond(Readiness(status="ready", reaper_last_pass_age_secs=reaper.age_secs()))


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
