"""Stella Ops' agent API at /api/v1/agents: camelCase bodies, heartbeat delivers tasks, and a
WebSocket task stream. A Stella task is a job in queue ``stella``: ``command`` is its task type,
``payload`` its payload. Capabilities are labels ``cap:<name>``, labels ``key=value``.

Not served yet: the short-lived client certificate (mTLS) and per-task ``credentials`` (always
``{}``); agents authenticate with the token from registration.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import WSMsgType, web
from pydantic import BaseModel, Field, JsonValue, ValidationError

from leasehold.api.routes.compat.common import claim_one, lease_of
from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.audit import audit
from leasehold.api.server.http import REGISTRATION_TOKEN, principal, read_model, respond
from leasehold.api.server.routing import (
    ADMIN,
    READERS,
    REGISTRATION,
    WORKERS,
    one_of,
    router,
)
from leasehold.scheduler import errors
from leasehold.scheduler.auth import Principal
from leasehold.scheduler.logs import NewChunk
from leasehold.scheduler.models import Claim, Worker, WorkerStatus
from leasehold.scheduler.workers import Claimant

BASE = "/api/v1/agents"
TAG = "compat: Stella Ops agents"
QUEUE = "stella"
CANCEL_CHECK_SECS = 2.0
ERRS = (400, 401, 403, 404, 409)


class Camel(BaseModel):
    model_config = {"populate_by_name": True}


class AgentRegister(Camel):
    name: str = Field(min_length=1, max_length=128)
    version: str | None = Field(default=None, max_length=64)
    capabilities: list[str] = Field(default_factory=list, max_length=32)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)


class AgentUpdate(Camel):
    labels: dict[str, str] | None = Field(default=None, max_length=32)
    capabilities: list[str] | None = Field(default=None, max_length=32)


class AgentHeartbeat(Camel):
    status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    resourceUsage: dict[str, JsonValue] | None = None  # the seed's wire name
    capabilities: list[str] | None = None
    runningTasks: int | None = Field(default=None, ge=0)


class TaskLog(BaseModel):
    timestamp: str | None = None
    level: str = "info"
    message: str = Field(max_length=65536)


class TaskComplete(BaseModel):
    success: bool
    result: dict[str, JsonValue] = Field(default_factory=dict)
    logs: list[TaskLog] = Field(default_factory=list, max_length=1000)


def labels_of(labels: dict[str, str], capabilities: list[str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()] + [f"cap:{c}" for c in capabilities]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def agent(worker: Worker) -> dict[str, Any]:
    status = {WorkerStatus.OFFLINE: "offline", WorkerStatus.DRAINING: "degraded"}.get(
        worker.status, "online")
    return {"id": worker.worker_id, "name": worker.name, "version": worker.version,
            "status": status,
            "capabilities": [x[4:] for x in worker.labels if x.startswith("cap:")],
            "labels": dict(x.split("=", 1) for x in worker.labels if "=" in x),
            "lastHeartbeat": iso(worker.last_heartbeat_ms),
            "resourceUsage": worker.resource_usage, "runningTasks": worker.running_jobs}


def task(claim: Claim) -> dict[str, Any]:
    text = getattr(claim.job.payload, "text", None)
    return {"taskId": claim.job.id, "taskType": claim.job.command,
            "payload": orjson.loads(text) if text else {}, "credentials": {},
            "timeout": claim.job.timeout_secs or claim.lease.ttl_secs,
            "priority": claim.job.priority, "createdAt": iso(claim.job.enqueued_at_ms)}


def _self(request: web.Request) -> tuple[Principal, str]:
    caller, agent_id = principal(request), request.match_info["id"]
    if caller.role == "worker" and caller.worker_id != agent_id:
        raise errors.Forbidden("an agent acts only for itself")
    return caller, agent_id


async def _as_agent(request: web.Request, agent_id: str) -> Principal:
    """The agent itself; an admin acts for it with its registered labels."""
    caller = principal(request)
    if caller.role == "worker":
        return caller
    who = await request.app[SERVICES].workers.claimant(agent_id)
    return Principal(kind="admin", role="worker", worker_id=agent_id, labels=who.labels,
                     drain=who.drain, registered_at_ms=who.registered_at_ms)


@router.route("POST", BASE + "/register", roles=(*ADMIN, REGISTRATION), tag=TAG,
              body=AgentRegister, status=201, summary="Register an agent with a one-time "
              "registration token in X-Agent-Token; 409 when the name is taken", errors=ERRS)
async def stella_register(request: web.Request) -> web.Response:
    body = await read_model(request, AgentRegister)
    registration: str | None = request.get(REGISTRATION_TOKEN)
    worker, token = await request.app[SERVICES].workers.register(
        registration, None, body.name, labels_of(body.labels, body.capabilities), body.version)
    audit(request, "worker.register", worker_id=worker.worker_id)
    interval = round(request.app[SETTINGS].default_lease_ttl_secs / 3, 3)
    return respond({"agentId": worker.worker_id, "token": token,
                    "config": {"heartbeatInterval": interval, "taskPollInterval": 5,
                               "logLevel": "info"}}, 201)


@router.route("GET", BASE, roles=READERS, tag=TAG,
              query={"status": one_of("only agents in this state",
                                      ("online", "offline", "degraded")),
                     "capability": "a capability"},
              summary="List agents", errors=(400, 401, 403))
async def stella_list_agents(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status not in (None, "online", "offline", "degraded"):
        raise errors.InvalidArgument("status must be online, offline or degraded")
    capability = request.query.get("capability")
    workers = await request.app[SERVICES].workers.list(
        None, f"cap:{capability}" if capability else None)
    agents = [agent(w) for w in workers]
    return respond([a for a in agents if status is None or a["status"] == status])


@router.route("GET", BASE + "/{id}", roles=(*READERS, "worker"), tag=TAG,
              summary="An agent", errors=(401, 403, 404))
async def stella_get_agent(request: web.Request) -> web.Response:
    _, agent_id = _self(request)
    return respond(agent(await request.app[SERVICES].workers.get(agent_id)))


@router.route("PUT", BASE + "/{id}", roles=ADMIN, tag=TAG, body=AgentUpdate,
              summary="Change an agent's labels and capabilities (admin)", errors=ERRS)
async def stella_update_agent(request: web.Request) -> web.Response:
    body = await read_model(request, AgentUpdate)
    workers, agent_id = request.app[SERVICES].workers, request.match_info["id"]
    current = agent(await workers.get(agent_id))
    labels = labels_of(body.labels if body.labels is not None else current["labels"],
                       body.capabilities if body.capabilities is not None
                       else current["capabilities"])
    worker = await workers.update(agent_id, labels=labels)
    audit(request, "worker.patch", worker_id=agent_id)
    return respond(agent(worker))


@router.route("DELETE", BASE + "/{id}", roles=ADMIN, tag=TAG, summary="Revoke an agent: its "
              "token fails at once; its tasks go back to the queue", errors=(401, 403, 404))
async def stella_delete_agent(request: web.Request) -> web.Response:
    services, agent_id = request.app[SERVICES], request.match_info["id"]
    worker = await services.workers.get(agent_id)
    await services.workers.revoke(agent_id)
    await services.waiters.stop_worker(agent_id, worker.registered_at_ms)
    audit(request, "worker.revoke", worker_id=agent_id)
    return respond({"deleted": True})


@router.route("POST", BASE + "/{id}/heartbeat", roles=WORKERS, tag=TAG, body=AgentHeartbeat,
              summary="Mark the agent online; the reply carries a task when one is waiting",
              errors=ERRS)
async def stella_heartbeat(request: web.Request) -> web.Response:
    _, agent_id = _self(request)
    body = await read_model(request, AgentHeartbeat, optional=True)
    services = request.app[SERVICES]
    await services.workers.heartbeat(agent_id, None, body.runningTasks, body.resourceUsage)
    claimed = await claim_one(request, await _as_agent(request, agent_id), [QUEUE])
    return respond({"tasks": [task(claimed)] if claimed else []})


@router.route("GET", BASE + "/{id}/tasks", roles=WORKERS, tag=TAG,
              summary="Poll for a task (instead of the heartbeat): assigns one when waiting",
              errors=(401, 403, 404))
async def stella_poll_tasks(request: web.Request) -> web.Response:
    _, agent_id = _self(request)
    claimed = await claim_one(request, await _as_agent(request, agent_id), [QUEUE])
    return respond({"tasks": [task(claimed)] if claimed else []})


async def _log(request: web.Request, lease_id: str, owner: str, entries: list[TaskLog]) -> None:
    if entries:
        await request.app[SERVICES].logs.append(lease_id, owner, [
            NewChunk(data=f"[{e.level}] {e.message}\n",
                     stream="stderr" if e.level in ("error", "fatal") else "stdout")
            for e in entries])


@router.route("POST", BASE + "/{id}/tasks/{taskId}/complete", roles=WORKERS, tag=TAG,
              body=TaskComplete, summary="Finish a task: success completes with result as "
              "outputs, else fails it; logs are stored as the task's log", errors=ERRS)
async def stella_complete_task(request: web.Request) -> web.Response:
    caller, agent_id = _self(request)
    body = await read_model(request, TaskComplete)
    task_id, owner = request.match_info["taskId"], caller.lease_owner or agent_id
    caller.require_job(task_id)
    lease_id = await lease_of(request, task_id)
    await _log(request, lease_id, owner, body.logs)
    scheduler = request.app[SERVICES].scheduler
    if body.success:
        await scheduler.complete(lease_id, owner, body.result)
    else:
        error = str(body.result.get("error") or "the agent reported failure")
        await scheduler.fail(lease_id, error, owner)
    return respond({"acknowledged": True})


@router.route("GET", BASE + "/{id}/task-stream", roles=WORKERS, tag=TAG,
              summary="WebSocket: task_assigned and task_cancelled from the server, "
              "task_progress and task_log from the agent (400 without a WebSocket upgrade)",
              errors=(400, 401, 403, 404))
async def stella_task_stream(request: web.Request) -> web.StreamResponse:
    _, agent_id = _self(request)
    who = await _as_agent(request, agent_id)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    held: dict[str, str] = {}  # task id -> lease id of the tasks assigned over this stream
    pusher = asyncio.create_task(_push(request, ws, who, held))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            await _incoming(request, ws, who, held, msg.data)
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
            await pusher
    return ws


async def _incoming(request: web.Request, ws: web.WebSocketResponse, who: Principal,
                    held: dict[str, str], data: str) -> None:
    services = request.app[SERVICES]
    try:
        message = orjson.loads(data)
        kind, task_id = message["type"], str(message["taskId"])
        lease_id = held.get(task_id) or await lease_of(request, task_id)
        if kind == "task_progress":
            progress = message.get("progress")
            await services.scheduler.heartbeat(
                lease_id, who.worker_id, None,
                int(progress) if isinstance(progress, int | float) else None,
                str(message.get("message", ""))[:1024] or None)
        elif kind == "task_log":
            await _log(request, lease_id, who.worker_id,
                       [TaskLog(level=str(message.get("level", "info")),
                                message=str(message.get("message", "")))])
        else:
            raise errors.InvalidArgument("type must be task_progress or task_log")
    except (KeyError, TypeError, ValueError, ValidationError):
        await ws.send_json({"type": "error", "error": "invalid_request",
                            "message": "expected {type, taskId, ...}"})
    except errors.SchedulerError as exc:
        await ws.send_json({"type": "error", "error": exc.code, "message": exc.message})


async def _push(request: web.Request, ws: web.WebSocketResponse, who: Principal,
                held: dict[str, str]) -> None:
    """Long-polls for a task for this agent, and checks the held ones for cancellation."""
    services = request.app[SERVICES]
    while not ws.closed:
        batch = await services.waiters.claim(who.worker_id, sorted(who.labels), [QUEUE], None,
                                             1, CANCEL_CHECK_SECS, who.registered_at_ms)
        claimant = Claimant(who.worker_id, who.labels, who.drain, who.registered_at_ms)
        claims = await services.workers.keep_claims(claimant, batch.claims)
        services.workers.seen(who.worker_id)
        claimed = claims[0] if claims else None
        if claimed is not None:
            try:
                await ws.send_json({"type": "task_assigned", "task": task(claimed)})
            except (ConnectionResetError, RuntimeError):  # the agent left: hand the task back
                with contextlib.suppress(errors.LeaseLost):
                    await services.scheduler.release(claimed.lease.lease_id, who.worker_id)
                return
            held[claimed.job.id] = claimed.lease.lease_id
        for task_id, lease_id in list(held.items()):
            try:
                beat = await services.scheduler.heartbeat(lease_id, who.worker_id)
            except errors.LeaseLost as exc:
                del held[task_id]
                if exc.code == "job_cancelled":
                    await ws.send_json({"type": "task_cancelled", "taskId": task_id})
                continue
            if beat.cancelled:
                del held[task_id]
                await ws.send_json({"type": "task_cancelled", "taskId": task_id})
