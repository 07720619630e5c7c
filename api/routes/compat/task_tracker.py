"""simon987/task_tracker's worker API at /compat/task-tracker: a project is a queue, a task a job.

Every reply is the seed's envelope ``{ok, message?, rate_limit_delay?, content?}``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar, cast

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leasehold.api.routes.compat.common import claim_one, identify, lease_of
from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.audit import audit
from leasehold.api.server.errors import status_of
from leasehold.api.server.http import REQUEST_ID, validation_details
from leasehold.api.server.routing import router
from leasehold.scheduler import errors
from leasehold.scheduler.auth import Principal
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.models import JobSpec, QueueLimits, RateLimit
from leasehold.scheduler.rawjson import integral

PREFIX = "/compat/task-tracker"
_ID = re.compile(r"^[0-9]{1,18}$")
TAG = "compat: task_tracker"
TR_OK, TR_FAIL, TR_SKIP = 0, 1, 2
Handler = Callable[[web.Request], Awaitable[web.Response]]
M = TypeVar("M", bound=BaseModel)


class Failure(Exception):
    """An ``ok: false`` reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         409: "conflict", 429: "rate_limited"}


def envelope(content: Any = None, message: str = "", ok: bool = True, status: int = 200,
             delay: float | None = None, request: web.Request | None = None,
             code: str = "") -> web.Response:
    """The seed's envelope; an error reply also carries the native ``error`` code and
    ``request_id`` (a task_tracker client ignores them)."""
    body: dict[str, Any] = {"ok": ok}
    if message:
        body["message"] = message
    if status >= 400:
        body["error"] = code or CODES.get(status, "error")
        body["request_id"] = request.get(REQUEST_ID, "") if request is not None else ""
    if delay is not None:
        body["rate_limit_delay"] = delay
    if content is not None:
        body["content"] = content
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def tt_route(method: str, path: str, summary: str, body: type[BaseModel] | None = None
             ) -> Callable[[Handler], Handler]:
    """A task_tracker route: its own auth headers, and every error in the seed's envelope;
    ``body`` is the model the handler reads (documented from the same model)."""

    def register(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except Failure as exc:
                return envelope(ok=False, message=exc.message, status=exc.status,
                                request=request)
            except errors.RateLimited as exc:
                return envelope(ok=False, message="Too many requests", status=429,
                                delay=float(exc.retry_after_secs), request=request,
                                code=exc.code)
            except errors.SchedulerError as exc:
                if isinstance(exc, errors.ScriptContractError):
                    raise
                return envelope(ok=False, message=exc.message, status=status_of(exc),
                                request=request, code=exc.code)

        router.route(method, PREFIX + path, roles=(), tag=TAG, summary=summary, body=body,
                     errors=(400, 401, 403, 404, 409, 429))(wrapped)
        return wrapped

    return register


async def caller(request: web.Request) -> Principal:
    """``X-Worker-ID`` + ``X-Secret`` (a worker's token); an API token may stand in the secret
    (or in ``Authorization: Bearer``) for producers and managers."""
    token = request.headers.get("X-Secret") or _bearer(request)
    found = await identify(request, token, request.headers.get("X-Worker-ID"))
    if found is None:
        raise Failure(401, "Unauthorized")
    return found


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header[:7].lower() == "bearer " else None


def _role(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise Failure(403, "Unauthorized: this token may not do that")


async def body_of(request: web.Request, model: type[M]) -> M:
    """The body as ``model``, strictly (no ``"5"`` for a number, ``5.0`` is 5); no body is
    ``{}``."""
    try:
        decoded = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise Failure(400, f"Could not parse request: {exc}") from None
    try:
        return model.model_validate(integral(decoded), strict=True)
    except ValidationError as exc:
        details = validation_details(exc)
        where = ".".join(str(p) for p in details[0]["loc"]) if details else ""
        raise Failure(400, f"Could not parse request: {where} {details[0]['msg']}"
                      if details else "Could not parse request") from None


# -- projects ---------------------------------------------------------------------------------


class TaskTrackerProject(BaseModel):
    """A project's settings; ``hidden`` and ``public`` exclude each other."""

    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["hidden", "public"],
        "properties": {"hidden": {"const": True}, "public": {"const": True}}}})

    name: str = Field(pattern=QUEUE_NAME.pattern)
    clone_url: str = ""
    git_repo: str = ""
    version: str = ""
    priority: int = Field(default=0, ge=-(2**63), le=2**63 - 1)
    motd: str = ""
    public: bool = False
    hidden: bool = False
    chain: int = Field(default=0, ge=-(2**63), le=2**63 - 1)
    paused: bool = False
    assign_rate: float = Field(default=0, ge=0, le=1_000_000,
                               description="per second (below one a day counts as one a day)")
    submit_rate: float = Field(default=0, ge=0, le=1_000_000,
                               description="per second (below one a day counts as one a day)")


def _projects_key(request: web.Request) -> str:
    return request.app[SERVICES].scheduler.keys.global_prefix + "compat:task-tracker:projects"


async def project(request: web.Request, project_id: int) -> dict[str, Any]:
    raw = await request.app[SERVICES].redis.hget(_projects_key(request), str(project_id))
    if raw is None:
        raise Failure(404, "Project not found")
    found = cast(dict[str, Any], orjson.loads(raw))
    stats = await request.app[SERVICES].scheduler.queue_stats(found["name"])
    return {"id": project_id, **found, "paused": stats.paused}


def _rate(per_second: float) -> RateLimit:
    """A token-bucket rate per second as Leasehold's window limit (0 removes it; a rate below
    one a day is one a day)."""
    if per_second == 0 or per_second >= 1:
        return RateLimit(limit=int(per_second), per_secs=1)
    return RateLimit(limit=1, per_secs=min(86400, round(1 / per_second, 3)))


async def _apply(request: web.Request, fields: TaskTrackerProject, paused: bool) -> None:
    await request.app[SERVICES].scheduler.set_queue(fields.name, QueueLimits(
        paused=paused, claim_rate=_rate(fields.assign_rate),
        submit_rate=_rate(fields.submit_rate)))


@tt_route("POST", "/project/create", "Create a project (a queue of the same name); admin only",
          TaskTrackerProject)
async def tt_create_project(request: web.Request) -> web.Response:
    _role(await caller(request), "admin")
    fields = await body_of(request, TaskTrackerProject)
    if fields.hidden and fields.public:
        raise Failure(400, "Invalid project: hidden and public are exclusive")
    redis, key = request.app[SERVICES].redis, _projects_key(request)
    if not await redis.hsetnx(key, "name:" + fields.name, "0"):
        raise Failure(409, "Project with this name already exists")
    project_id = int(await redis.hincrby(key, "seq", 1))
    stored = fields.model_dump(exclude={"paused"})
    await redis.hset(key, mapping={str(project_id): orjson.dumps(stored),
                                   "name:" + fields.name: str(project_id)})
    await _apply(request, fields, fields.paused)
    audit(request, "task_tracker.project_create", queue=fields.name)
    return envelope({"id": project_id})


@tt_route("GET", "/project/get/{id}", "A project, with whether it is paused")
async def tt_get_project(request: web.Request) -> web.Response:
    await caller(request)
    return envelope(await project(request, _int(request.match_info["id"], "project")))


@tt_route("POST", "/project/update/{id}", "Change a project's settings; paused stops "
          "assignment; admin only", TaskTrackerProject)
async def tt_update_project(request: web.Request) -> web.Response:
    _role(await caller(request), "admin")
    project_id = _int(request.match_info["id"], "project")
    current = await project(request, project_id)
    fields = await body_of(request, TaskTrackerProject)
    if fields.name != current["name"]:
        raise Failure(409, "Invalid request: a project cannot be renamed")
    if fields.hidden and fields.public:
        raise Failure(400, "Invalid request: hidden and public are exclusive")
    await request.app[SERVICES].redis.hset(_projects_key(request), str(project_id),
                                           orjson.dumps(fields.model_dump(exclude={"paused"})))
    await _apply(request, fields, fields.paused)
    audit(request, "task_tracker.project_update", queue=fields.name, paused=fields.paused)
    return envelope()


def _int(raw: str, what: str) -> int:
    if not _ID.match(raw):  # no such project can exist
        raise Failure(404, f"{what.capitalize()} not found")
    return int(raw)


# -- workers ----------------------------------------------------------------------------------


class TaskTrackerWorker(BaseModel):
    alias: str = Field(default="", max_length=128, json_schema_extra={
        "not": {"const": "unassigned"}}, description="any name but the reserved 'unassigned'")


@tt_route("POST", "/worker/create", "Create a worker; its secret is shown once. Needs a "
          "registration token (or admin) in Authorization: Bearer", TaskTrackerWorker)
async def tt_create_worker(request: web.Request) -> web.Response:
    fields = await body_of(request, TaskTrackerWorker)
    if fields.alias == "unassigned":
        raise Failure(400, "Invalid request: alias unassigned is reserved")
    services, token = request.app[SERVICES], _bearer(request)
    registration: str | None = None
    if request.app[SETTINGS].auth:
        if token is None:
            raise Failure(401, "Unauthorized: send a registration token")
        found = await services.tokens.authenticate(token)
        if found is None:
            registration = token
        elif found.role != "admin":
            raise Failure(403, "Unauthorized: this token may not create workers")
    worker_id = secrets.randbits(52) + 1
    worker, secret = await services.workers.register(
        registration, str(worker_id), fields.alias or None, [])
    audit(request, "worker.register", worker_id=worker.worker_id)
    return envelope({"worker": {"id": worker_id, "created": worker.registered_at_ms // 1000,
                                "alias": fields.alias, "secret": secret, "paused": False}})


# -- tasks ------------------------------------------------------------------------------------


class TaskTrackerTask(BaseModel):
    """One task; ``hash_u64`` and ``unique_string`` exclude each other."""

    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["hash_u64", "unique_string"],
        "properties": {"hash_u64": {"not": {"const": 0}}, "unique_string": {"minLength": 1}}}})

    project: int = Field(ge=-(2**63), le=2**63 - 1)
    max_retries: int = Field(default=0, ge=0, le=1001)
    recipe: str = Field(min_length=1, max_length=1_000_000)
    priority: int = Field(default=0, ge=-32768, le=32767)
    max_assign_time: int = Field(default=0, ge=0, le=2**63 - 1)
    hash_u64: int = Field(default=0, ge=-(2**63), le=2**63 - 1)
    unique_string: str = Field(default="", max_length=480)
    verification_count: int = Field(default=0, ge=0, le=100)


class TaskTrackerBulkSubmit(BaseModel):
    requests: list[TaskTrackerTask] = Field(min_length=1, max_length=1000)


def spec_of(task: TaskTrackerTask, queue: str) -> JobSpec:
    if task.hash_u64 and task.unique_string:
        raise Failure(400, "Invalid request: give hash_u64 or unique_string, not both")
    digest = task.hash_u64
    if task.unique_string:  # hashed into the same 64-bit space, as the seed does
        digest = int.from_bytes(hashlib.blake2b(task.unique_string.encode(), digest_size=8)
                                .digest(), "big", signed=True)
    count = max(1, task.verification_count)
    return JobSpec.model_validate({
        "queue": queue, "command": task.recipe,
        "priority": min(1000, max(0, 500 - task.priority)),  # the seed claims higher first
        "retry_policy": {"max_retries": max(0, task.max_retries - 1)},
        "lease_ttl_secs": min(task.max_assign_time, 86400) or None,
        "unique_key": f"task-tracker:{digest}" if digest else None,
        "verification": {"count": count} if count > 1 else None,
        "metadata": {"task_tracker": {"project": task.project, "priority": task.priority,
                                      "max_retries": task.max_retries,
                                      "max_assign_time": task.max_assign_time,
                                      "verification_count": count}},
    })


async def _submit(request: web.Request, tasks: list[TaskTrackerTask]) -> web.Response:
    who = await caller(request)
    _role(who, "admin", "submitter")
    projects = {task.project for task in tasks}
    queue = ""
    for project_id in sorted(projects):  # an unknown project is 404 before the rule below
        queue = (await project(request, project_id))["name"]
    if len(projects) != 1:
        raise Failure(400, "Invalid request: all tasks must be for the same project")
    who.require(queue)
    specs = [spec_of(task, queue) for task in tasks]
    done = await request.app[SERVICES].scheduler.submit_bulk(specs)
    if any(item.deduplicated for item in done):
        # the seed's unique (project, hash) index refuses the duplicate
        raise Failure(409, "duplicate key value violates unique constraint: a task with this "
                      "hash already exists in the project")
    return envelope()


@tt_route("POST", "/task/submit", "Submit a task; a duplicate hash_u64 or unique_string is "
          "refused (needs a submitter or admin token)", TaskTrackerTask)
async def tt_submit(request: web.Request) -> web.Response:
    return await _submit(request, [await body_of(request, TaskTrackerTask)])


@tt_route("POST", "/task/bulk_submit", "Submit tasks of one project atomically",
          TaskTrackerBulkSubmit)
async def tt_bulk_submit(request: web.Request) -> web.Response:
    return await _submit(request, (await body_of(request, TaskTrackerBulkSubmit)).requests)


@tt_route("GET", "/task/get/{project}", "Assign the best task of a project to the worker; "
          "ok: false 'No task available' when there is none")
async def tt_get_task(request: web.Request) -> web.Response:
    who = await caller(request)
    project_id = _int(request.match_info["project"], "project")
    found = await project(request, project_id)
    claim = await claim_one(request, who, [found["name"]])
    if claim is None:
        return envelope(ok=False, message="No task available")
    job, meta = claim.job, _meta(claim.job.metadata)
    return envelope({"task": {
        "id": job.id, "priority": meta.get("priority", 0), "assignee": _num(who.worker_id),
        "retries": claim.lease.attempt, "max_retries": meta.get("max_retries", 0),
        "status": 1, "recipe": job.command or "",
        "max_assign_time": meta.get("max_assign_time", 0),
        "assign_time": claim.lease.granted_at_ms // 1000,
        "verification_count": meta.get("verification_count", 1), "project": found}})


def _meta(raw: Any) -> dict[str, Any]:
    text = getattr(raw, "text", None)
    value = orjson.loads(text) if text else {}
    return cast(dict[str, Any], value.get("task_tracker", {}) if isinstance(value, dict) else {})


def _num(worker_id: str) -> int | str:
    return int(worker_id) if worker_id.isdigit() else worker_id


class TaskTrackerRelease(BaseModel):
    task_id: str | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
    result: Literal[0, 1, 2] = Field(description="0 OK, 1 FAIL (uses a retry), 2 SKIP")
    verification: int = Field(default=0, ge=-(2**63), le=2**63 - 1)


@tt_route("POST", "/task/release", "Release an assigned task: result 0 OK (with verification "
          "when the task needs a quorum), 1 FAIL (uses a retry), 2 SKIP (as if never assigned)",
          TaskTrackerRelease)
async def tt_release(request: web.Request) -> web.Response:
    who = await caller(request)
    body = await body_of(request, TaskTrackerRelease)
    scheduler, owner = request.app[SERVICES].scheduler, who.lease_owner
    job_id = str(body.task_id)
    lease_id = await lease_of(request, job_id)
    who.require_job(job_id)
    request.app[SERVICES].workers.seen(owner)
    if body.result == TR_OK:
        await scheduler.complete(lease_id, owner, {}, verification=str(body.verification))
        updated = (await scheduler.get(job_id)).status == "success"
        return envelope({"updated": updated}, message="" if updated else
                        "Task is awaiting verification")
    if body.result == TR_FAIL:
        await scheduler.fail(lease_id, "released with TR_FAIL", owner, retryable=True)
    else:
        await scheduler.release(lease_id, owner)
    return envelope({"updated": True})
