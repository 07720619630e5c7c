"""Worker routes: register, worker heartbeat, list, get, edit, revoke, drain and undrain."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, JsonValue

from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.audit import audit
from leasehold.api.server.http import REGISTRATION_TOKEN, principal, read_model, respond
from leasehold.api.server.routing import (
    ADMIN,
    READERS,
    REGISTRATION,
    WORKERS,
    Param,
    one_of,
    router,
)
from leasehold.api.wire import (
    Deleted,
    Register,
    Registered,
    WorkerConfig,
    WorkerHeartbeat,
    WorkerHeartbeatReply,
)
from leasehold.scheduler import errors
from leasehold.scheduler.auth import Principal
from leasehold.scheduler.models import Label, Strict, Worker, WorkerStatus


class WorkerUpdate(Strict):
    """The fields an operator may change; an absent field keeps its value."""

    labels: list[Label] | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=128)
    metadata: dict[str, JsonValue] | None = None


@router.route("POST", "/api/workers/register", roles=(*WORKERS, REGISTRATION), tag="workers",
              body=Register, response=Registered, status=201,
              summary="Register a worker with a one-time registration token (or admin); the "
              "worker token in the reply is shown once. A worker restarting under its id "
              "replaces its registration when it sends its own worker token (with auth off, "
              "always, as workflow-graph does); else a live holder of the id is 409",
              errors=(400, 401, 403, 409))
async def register(request: web.Request) -> web.Response:
    body = await read_model(request, Register)
    settings = request.app[SETTINGS]
    registration_token: str | None = request.get(REGISTRATION_TOKEN)
    caller = principal(request) if registration_token is None else None
    own_id = caller.worker_id if caller is not None and caller.role == "worker" else None
    if own_id is not None and body.worker_id not in (None, own_id):
        raise errors.Forbidden("a worker token registers only its own worker_id again")
    worker, token = await request.app[SERVICES].workers.register(
        registration_token, own_id or body.worker_id, body.name, body.labels, body.version,
        body.metadata, replace_live=own_id is not None or not settings.auth)
    audit(request, "worker.register", worker_id=worker.worker_id)
    ttl = settings.default_lease_ttl_secs
    config = WorkerConfig(heartbeat_interval_secs=round(ttl / 3, 3), lease_ttl_secs=ttl)
    return respond(Registered(worker_id=worker.worker_id, worker_token=token, config=config), 201)


def _own_worker(caller: Principal, worker_id: str) -> None:
    if caller.role == "worker" and caller.worker_id != worker_id:
        raise errors.Forbidden("a worker token acts only for its own worker")


async def _heartbeat(request: web.Request, worker_id: str) -> web.Response:
    _own_worker(principal(request), worker_id)
    body = await read_model(request, WorkerHeartbeat, optional=True)
    drain = await request.app[SERVICES].workers.heartbeat(
        worker_id, body.version, body.running_jobs, body.resource_usage)
    return respond(WorkerHeartbeatReply(drain=drain, worker_id=worker_id))


@router.route("POST", "/api/workers/{id}/heartbeat", roles=WORKERS, tag="workers",
              body=WorkerHeartbeat, response=WorkerHeartbeatReply,
              summary="Mark the worker online; drain: true asks it to stop claiming",
              errors=(400, 401, 403, 404))
async def worker_heartbeat(request: web.Request) -> web.Response:
    return await _heartbeat(request, request.match_info["id"])


@router.route("POST", "/api/workers/heartbeat", roles=WORKERS, tag="workers",
              body=WorkerHeartbeat, response=WorkerHeartbeatReply,
              summary="Worker heartbeat naming the worker by its token or X-Worker-ID",
              query={"X-Worker-ID": Param("the worker: needed with an admin token (403 "
                                          "without); a worker token may leave it out",
                                          {"type": "string", "minLength": 1}, where="header")},
              errors=(400, 401, 403, 404))
async def worker_heartbeat_by_header(request: web.Request) -> web.Response:
    worker_id = principal(request).worker_id or request.headers.get("X-Worker-ID", "")
    if not worker_id:
        raise errors.Forbidden("an admin token is no worker: name the worker in X-Worker-ID "
                               "(or use the worker's token)")
    return await _heartbeat(request, worker_id)


@router.route("GET", "/api/workers", roles=READERS, tag="workers", response=list[Worker],
              query={"status": one_of("online means idle or busy",
                                    ("idle", "busy", "draining", "offline", "online")),
                     "label": "a label"},
              summary="List workers (bare JSON array)", errors=(400, 401, 403))
async def list_workers(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in WorkerStatus}:
        raise errors.InvalidArgument("status must be idle, busy, draining, offline or online")
    workers = await request.app[SERVICES].workers.list(status, request.query.get("label"))
    return respond(workers if workers else [])


@router.route("GET", "/api/workers/{id}", roles=(*READERS, "worker"), tag="workers",
              response=Worker, summary="Get a worker", errors=(401, 403, 404))
async def get_worker(request: web.Request) -> web.Response:
    worker_id = request.match_info["id"]
    _own_worker(principal(request), worker_id)
    return respond(await request.app[SERVICES].workers.get(worker_id))


@router.route("PATCH", "/api/workers/{id}", roles=ADMIN, tag="workers", body=WorkerUpdate,
              response=Worker, summary="Change a worker's labels, name or metadata; its next "
              "claim uses the new labels (409 when the name belongs to another live worker)",
              errors=(400, 401, 403, 404, 409))
async def update_worker(request: web.Request) -> web.Response:
    body = await read_model(request, WorkerUpdate)
    worker = await request.app[SERVICES].workers.update(
        request.match_info["id"], body.labels, body.name, body.metadata)
    audit(request, "worker.patch", worker_id=worker.worker_id,
          fields=sorted(body.model_fields_set))
    return respond(worker)


@router.route("DELETE", "/api/workers/{id}", roles=ADMIN, tag="workers", response=Deleted,
              summary="Revoke a worker: its token fails at once and its leases go back to "
              "the queue without using an attempt", errors=(401, 403, 404))
async def revoke_worker(request: web.Request) -> web.Response:
    services, worker_id = request.app[SERVICES], request.match_info["id"]
    worker = await services.workers.get(worker_id)
    released = await services.workers.revoke(worker_id)
    await services.waiters.stop_worker(worker_id, worker.registered_at_ms)
    audit(request, "worker.revoke", worker_id=worker_id)
    return respond(Deleted(leases_released=released))


@router.route("POST", "/api/workers/{id}/drain", roles=ADMIN, tag="workers", response=Worker,
              summary="Stop giving the worker jobs at once (its waiting claims return empty); its "
              "heartbeat says drain: true",
              errors=(401, 403, 404))
async def drain(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    worker = await services.workers.set_drain(request.match_info["id"], True)
    await services.waiters.stop_worker(worker.worker_id, worker.registered_at_ms)
    audit(request, "worker.drain", worker_id=worker.worker_id)
    return respond(worker)


@router.route("POST", "/api/workers/{id}/undrain", roles=ADMIN, tag="workers", response=Worker,
              summary="Let a drained worker claim again", errors=(401, 403, 404))
async def undrain(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    worker = await services.workers.set_drain(request.match_info["id"], False)
    await services.waiters.resume_worker(worker.worker_id, worker.registered_at_ms)
    audit(request, "worker.undrain", worker_id=worker.worker_id)
    return respond(worker)


