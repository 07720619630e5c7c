"""Trellis/Tendril's worker API at /compat/trellis: jobs named by id, 204 when the queue is empty.

Tendril agents authenticate with ``X-Worker-ID`` + ``X-Worker-Token`` (the native auth headers).
Their jobs live in queue ``trellis``; a job's payload holds ``job_type``, ``config_snapshot``,
``vine_id`` and ``vineyard_id``. Short-lived cloud credentials at claim time (``cloud_identity``)
are not issued yet: the claim reply carries ``cloud_identity: null``.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, JsonValue

from leasehold.api.routes import lifecycle
from leasehold.api.routes.artifacts import UNTRUSTED, store
from leasehold.api.routes.compat.common import claim_one, lease_of
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.audit import audit
from leasehold.api.server.http import (
    REGISTRATION_TOKEN,
    principal,
    query_int,
    read_model,
    respond,
)
from leasehold.api.server.routing import (
    ADMIN,
    ENTRY_ID,
    READERS,
    REGISTRATION,
    WORKERS,
    Param,
    matching,
    router,
)
from leasehold.scheduler import errors
from leasehold.scheduler.artifacts import CHUNK_BYTES
from leasehold.scheduler.logs import NewChunk
from leasehold.scheduler.models import Strict

PREFIX = "/compat/trellis"
TAG = "compat: Trellis/Tendril"
QUEUE = "trellis"
PLAN = "plan-artifact"
ERRS = (400, 401, 403, 404, 409)


class TrellisRegister(Strict):
    name: str = Field(min_length=1, max_length=128)
    mode: Literal["self-hosted", "cloud-hosted"] = "self-hosted"


class TrellisRegistered(BaseModel):
    worker_id: str
    worker_token: str


class StatusUpdate(BaseModel):
    status: Literal["PROCESSING", "SUCCESS", "FAILED", "CANCELLED"]
    execution_metadata: dict[str, JsonValue] = Field(default_factory=dict)
    error_message: str | None = Field(default=None, max_length=65536)


class LogPost(BaseModel):
    log_chunk: str = Field(max_length=1_000_000)
    stream_type: Literal["STDOUT", "STDERR", "SYSTEM"] = "STDOUT"


class TrellisHeartbeat(BaseModel):
    version: str | None = Field(default=None, max_length=64)


class Metadata(BaseModel):
    """The body is the worker's whole metadata object."""

    model_config = {"extra": "allow"}


@router.route("POST", PREFIX + "/api/workers/register", roles=(*ADMIN, REGISTRATION), tag=TAG,
              body=TrellisRegister, response=TrellisRegistered, status=201,
              summary="Register a Tendril (registration token or admin); the token is shown "
              "once", errors=(400, 401, 403, 409))
async def trellis_register(request: web.Request) -> web.Response:
    body = await read_model(request, TrellisRegister)
    registration: str | None = request.get(REGISTRATION_TOKEN)
    worker, token = await request.app[SERVICES].workers.register(
        registration, None, body.name, [f"mode:{body.mode}"], metadata={"mode": body.mode})
    audit(request, "worker.register", worker_id=worker.worker_id)
    return respond(TrellisRegistered(worker_id=worker.worker_id, worker_token=token), 201)


def trellis_job(job_id: str, payload: Any) -> dict[str, Any]:
    text = getattr(payload, "text", None)
    fields = orjson.loads(text) if text else {}
    fields = fields if isinstance(fields, dict) else {"config_snapshot": fields}
    return {"id": job_id, "job_type": fields.get("job_type"),
            "config_snapshot": fields.get("config_snapshot"), "vine_id": fields.get("vine_id"),
            "vineyard_id": fields.get("vineyard_id")}


@router.route("POST", PREFIX + "/api/jobs/claim", roles=WORKERS, tag=TAG, also=(204,),
              summary="Claim the oldest job of queue trellis; 204 when there is none",
              errors=(401, 403))
async def trellis_claim(request: web.Request) -> web.Response:
    claimed = await claim_one(request, principal(request), [QUEUE])
    if claimed is None:
        return web.Response(status=204)
    return respond({"job": trellis_job(claimed.job.id, claimed.job.payload),
                    "cloud_identity": None})


async def _held(request: web.Request) -> tuple[str, str, str]:
    """The path's job, the lease on it, and the caller who must hold that lease."""
    job_id, caller = request.match_info["id"], principal(request)
    caller.require_job(job_id)
    return job_id, await lease_of(request, job_id), caller.lease_owner


@router.route("PUT", PREFIX + "/api/jobs/{id}/status", roles=WORKERS, tag=TAG, body=StatusUpdate,
              summary="PROCESSING extends the lease; SUCCESS completes with execution_metadata "
              "as outputs; FAILED and CANCELLED fail the job", errors=ERRS)
async def trellis_status(request: web.Request) -> web.Response:
    body = await read_model(request, StatusUpdate)
    job_id, lease_id, owner = await _held(request)
    services = request.app[SERVICES]
    services.workers.seen(owner)
    scheduler = services.scheduler
    if body.status == "PROCESSING":
        await scheduler.heartbeat(lease_id, owner)
    elif body.status == "SUCCESS":
        with lifecycle.lease_call("job_completed", lease_id, owner):
            await scheduler.complete(lease_id, owner, body.execution_metadata)
    else:
        error = body.error_message or str(body.execution_metadata.get("error") or body.status)
        with lifecycle.lease_call("job_failed", lease_id, owner):
            await scheduler.fail(lease_id, error, owner, retryable=False)
    return respond({"id": job_id, "status": body.status})


@router.route("POST", PREFIX + "/api/jobs/{id}/logs", roles=WORKERS, tag=TAG, body=LogPost,
              status=201, summary="Append a log chunk (STDOUT, STDERR or SYSTEM) to a job the "
              "worker holds", errors=ERRS)
async def trellis_post_logs(request: web.Request) -> web.Response:
    body = await read_model(request, LogPost)
    _, lease_id, owner = await _held(request)
    await request.app[SERVICES].logs.append(
        lease_id, owner, [NewChunk(data=body.log_chunk, stream=body.stream_type.lower())])
    return respond({"ok": True}, 201)


@router.route("GET", PREFIX + "/api/jobs/{id}/logs", roles=(*READERS, "worker"), tag=TAG,
              query={"after": matching("the id of the last chunk seen", ENTRY_ID)},
              summary="A job's log chunks in order, after ?after=", errors=(400, 401, 403, 404))
async def trellis_get_logs(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    principal(request).require_job(job_id)
    limit = query_int(request, "limit", 1000, 1, 1000)
    chunks, _ = await request.app[SERVICES].logs.read(job_id, request.query.get("after"), limit)
    return respond([{"id": c.id, "job_id": job_id, "log_chunk": c.data,
                     "stream_type": c.stream.upper(), "created_at_ms": c.timestamp_ms}
                    for c in chunks])


@router.route("POST", PREFIX + "/api/jobs/{id}/plan-artifact", roles=WORKERS, tag=TAG,
              raw_body=True, status=201, summary="Upload the job's plan file (raw bytes; "
              "stored as its artifact plan-artifact)", errors=(*ERRS, 413))
async def trellis_put_plan(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    artifact = await store(request).upload(
        job_id, PLAN, "application/octet-stream", principal(request).lease_owner,
        request.content.iter_chunked(CHUNK_BYTES), request.content_length)
    return respond(artifact, 201)


@router.route("GET", PREFIX + "/api/jobs/{id}/plan-artifact", roles=(*READERS, "worker"),
              tag=TAG, raw_response=True, summary="Download the job's plan file",
              errors=(401, 403, 404))
async def trellis_get_plan(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    artifacts = store(request)
    caller = principal(request)
    if caller.role == "worker" and not await artifacts.may_read(job_id, caller.worker_id):
        raise errors.Forbidden("a worker reads only the plans of jobs it holds or their "
                               "upstream jobs")
    art = await artifacts.get(job_id, PLAN)
    response = web.StreamResponse(headers={"Content-Type": art.content_type, **UNTRUSTED})
    response.content_length = art.size
    await response.prepare(request)
    async for chunk in artifacts.read(job_id, art):
        await response.write(chunk)
    await response.write_eof()
    return response


@router.route("POST", PREFIX + "/api/workers/heartbeat", roles=WORKERS, tag=TAG,
              body=TrellisHeartbeat, summary="Mark the Tendril online and record its version",
              query={"X-Worker-ID": Param("the Tendril: needed with an admin token (403 "
                                          "without); a worker token may leave it out",
                                          {"type": "string", "minLength": 1}, where="header")},
              errors=(400, 401, 403, 404))
async def trellis_heartbeat(request: web.Request) -> web.Response:
    body = await read_model(request, TrellisHeartbeat, optional=True)
    worker_id = principal(request).worker_id or request.headers.get("X-Worker-ID", "")
    if not worker_id:
        raise errors.Forbidden("an admin token is no worker: name the Tendril in X-Worker-ID")
    drain = await request.app[SERVICES].workers.heartbeat(worker_id, body.version)
    return respond({"ok": True, "drain": drain})


def _own(request: web.Request, worker_id: str) -> None:
    caller = principal(request)
    if caller.role == "worker" and caller.worker_id != worker_id:
        raise errors.Forbidden("a worker token acts only for its own worker")


@router.route("GET", PREFIX + "/api/workers/{id}", roles=(*READERS, "worker"), tag=TAG,
              summary="A Tendril's record with its metadata", errors=(401, 403, 404))
async def trellis_get_worker(request: web.Request) -> web.Response:
    worker_id = request.match_info["id"]
    _own(request, worker_id)
    return respond(await request.app[SERVICES].workers.get(worker_id))


@router.route("POST", PREFIX + "/api/workers/{id}/metadata", roles=ADMIN, tag=TAG, body=Metadata,
              summary="Replace a Tendril's metadata (admin, as the native PATCH)",
              errors=(400, 401, 403, 404))
async def trellis_set_metadata(request: web.Request) -> web.Response:
    body = await read_model(request, Metadata)
    metadata: dict[str, JsonValue] = dict(body.model_extra or {})
    worker = await request.app[SERVICES].workers.update(request.match_info["id"],
                                                        metadata=metadata)
    audit(request, "worker.metadata", worker_id=worker.worker_id)
    return respond(worker)
