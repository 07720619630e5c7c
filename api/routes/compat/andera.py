"""Andera's base worker API at /compat/andera: ``POST /task`` becomes a job that any Leasehold
worker with label ``fn:<function>`` runs; the result comes back sync, streamed or by webhook."""

from __future__ import annotations

from typing import Literal, cast

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from leasehold.api.routes.compat.common import identify
from leasehold.api.routes.results import (
    ResultSpec,
    WebhookSpec,
    stream_result,
    wait_terminal,
    webhook_job_fields,
)
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.audit import audit
from leasehold.api.server.http import read_model, respond
from leasehold.api.server.routing import matching, router
from leasehold.scheduler import errors
from leasehold.scheduler.auth import Principal
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.models import Job, JobSpec
from leasehold.scheduler.webhooks import webhook_mode_rule

PREFIX = "/compat/andera"
TAG = "compat: Andera"
GROUP = "andera"
SYNC_WAIT_SECS = 30.0  # then 202 {id, status}, as the native sync mode


class AnderaTask(BaseModel):
    model_config = ConfigDict(json_schema_extra=webhook_mode_rule(["sync", "stream"]))

    function: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.:-]+$")
    input: dict[str, JsonValue] = Field(default_factory=dict)
    contract: int = Field(ge=0)
    priority: int | None = Field(default=None, ge=1, le=1000, description="1 = highest")
    group: str = Field(default=GROUP, pattern=QUEUE_NAME.pattern)
    mode: Literal["sync", "stream", "webhook"] = "sync"
    webhook: WebhookSpec | None = None


async def _caller(request: web.Request, *roles: str) -> Principal:
    """``Authorization: <key>`` (Andera sends the key bare; ``Bearer <key>`` works too)."""
    header = request.headers.get("Authorization", "").strip()
    token = header[7:].strip() if header[:7].lower() == "bearer " else header
    found = await identify(request, token or None)
    if found is None:
        raise errors.Unauthorized("send Authorization: <key>")
    if found.role not in roles:
        raise errors.Forbidden(f"role {found.role} may not call this route")
    return found


def _off_key(request: web.Request) -> str:
    return request.app[SERVICES].scheduler.keys.global_prefix + "compat:andera:off"


def task_reply(job: Job) -> dict[str, object]:
    outputs = getattr(job.outputs, "text", None)
    return {"id": job.id, "status": job.status.value,
            "result": orjson.loads(outputs) if outputs else None, "error": job.error}


@router.route("POST", PREFIX + "/task", roles=(), tag=TAG, body=AnderaTask,
              summary="Run a function: a job in queue <group> (default andera) with payload "
              "{function, input, contract} and label fn:<function>; sync answers the result, "
              "stream answers SSE, webhook answers 202 and POSTs the result",
              status=200, also=(202,), event_stream=True, errors=(400, 401, 403, 429, 503))
async def andera_task(request: web.Request) -> web.StreamResponse:
    who = await _caller(request, "admin", "submitter")
    body = await read_model(request, AnderaTask)
    who.require(body.group)
    if await request.app[SERVICES].redis.get(_off_key(request)):
        raise web.HTTPServiceUnavailable(reason="maintenance mode (POST /off): no new tasks")
    if body.mode == "webhook" and body.webhook is None:
        raise errors.InvalidArgument("mode webhook needs webhook.url")
    result = None
    if body.webhook is not None:
        if body.mode != "webhook":
            raise errors.InvalidArgument("webhook is only for mode webhook")
        result = ResultSpec(mode="webhook", webhook=body.webhook)
    extra = await webhook_job_fields(request, result)
    spec = JobSpec.model_validate({
        "queue": body.group, "priority": body.priority or 100,
        "payload": {"function": body.function, "input": body.input, "contract": body.contract},
        "required_labels": [f"fn:{body.function}"]})
    job = (await request.app[SERVICES].scheduler.submit(spec, extra_fields=extra or None)).job
    if body.mode == "stream":
        return await stream_result(request, job)
    if body.mode == "webhook":
        return respond(task_reply(job), 202)
    job = await wait_terminal(request, job, SYNC_WAIT_SECS)
    return respond(task_reply(job), 200 if job.status.terminal else 202)


@router.route("GET", PREFIX + "/health", roles=(), tag=TAG,
              summary="Status (public); with a key also each group's queue counts")
async def andera_health(request: web.Request) -> web.Response:
    off = bool(await request.app[SERVICES].redis.get(_off_key(request)))
    reply: dict[str, object] = {"status": "maintenance" if off else "ok"}
    header = request.headers.get("Authorization")
    if header and await identify(request, header.removeprefix("Bearer ").strip()) is not None:
        stats = await request.app[SERVICES].scheduler.queue_stats(GROUP)
        reply["queue"] = stats.model_dump()
    return respond(reply)


@router.route("GET", PREFIX + "/logs", roles=(), tag=TAG,
              query={"group": matching("the queue (default: the default group)",
                                       QUEUE_NAME.pattern)},
              summary="The last 1000 job transitions of a group, one line each",
              errors=(400, 401, 403))
async def andera_logs(request: web.Request) -> web.Response:
    who = await _caller(request, "admin", "submitter", "viewer")
    group = request.query.get("group", GROUP)
    if not QUEUE_NAME.match(group):
        raise errors.InvalidArgument("group must match " + QUEUE_NAME.pattern)
    who.require(group)
    scheduler = request.app[SERVICES].scheduler
    events = cast(list[tuple[str, dict[str, str]]], await scheduler.redis.xrevrange(
        scheduler.queue_keys(group).events, count=1000))
    lines = [f"{entry_id} {fields.get('job')} {fields.get('from')} -> {fields.get('to')}"
             for entry_id, fields in reversed(events)]
    return respond({"logs": lines})


async def _switch(request: web.Request, off: bool) -> web.Response:
    await _caller(request, "admin")
    redis, key = request.app[SERVICES].redis, _off_key(request)
    await (redis.set(key, "1") if off else redis.delete(key))
    audit(request, "andera.off" if off else "andera.on")
    return respond({"status": "maintenance" if off else "ok"})


@router.route("POST", PREFIX + "/on", roles=(), tag=TAG, summary="Accept new tasks again (admin)",
              errors=(401, 403))
async def andera_on(request: web.Request) -> web.Response:
    return await _switch(request, False)


@router.route("POST", PREFIX + "/off", roles=(), tag=TAG, summary="Maintenance: refuse new "
              "tasks (503), let queued and running ones finish (admin)", errors=(401, 403))
async def andera_off(request: web.Request) -> web.Response:
    return await _switch(request, True)

