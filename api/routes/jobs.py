"""Producer routes: submit (single, bulk, sync wait), read, list, cancel and retry jobs."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.routes.results import (
    SubmitBody,
    stream_result,
    wait_terminal,
    webhook_job_fields,
)
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.audit import audit
from leasehold.api.server.http import (
    principal,
    query_float,
    query_int,
    query_status,
    read_model,
    respond,
)
from leasehold.api.server.routing import (
    ADMIN,
    JOB_STATUSES,
    PRODUCERS,
    READERS,
    integer,
    matching,
    number,
    one_of,
    router,
)
from leasehold.api.wire import Accepted, BulkSubmit, BulkSubmitted, JobPage, SubmittedJob
from leasehold.scheduler import errors
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.models import Job, JobSpec, Submitted

MAX_SYNC_WAIT_SECS = 60.0


def _runnable(specs: list[JobSpec]) -> None:
    """A job gives a worker something to run: a ``command``, a ``payload``, or both."""
    for index, spec in enumerate(specs):
        if spec.command is None and spec.payload is None:
            where = f"jobs[{index}]: " if len(specs) > 1 else ""
            raise errors.InvalidArgument(f"{where}a job needs a command or a payload")


def _submitted(result: Submitted) -> SubmittedJob:
    return SubmittedJob(**result.job.model_dump(), deduplicated=result.deduplicated)


@router.route("POST", "/api/jobs", roles=PRODUCERS, tag="jobs", body=SubmitBody,
              response=SubmittedJob, status=201, also=(200, 202),
              query={"wait_secs": number("sync mode without a result object", 0,
                                          MAX_SYNC_WAIT_SECS)},
              summary="Submit a job (200 + deduplicated when unique_key matched). result.mode: "
                      "async (201 now), sync (200 finished job, 202 at timeout_secs), stream "
                      "(SSE: log and progress events, then end with the job), webhook (201 now; "
                      "the finished job is POSTed to result.webhook.url)",
              event_stream=True, errors=(400, 401, 403, 409, 413, 503))
async def submit(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    wait = query_float(request, "wait_secs", 0, 0, MAX_SYNC_WAIT_SECS)
    spec = await read_model(request, SubmitBody)
    principal(request).require(spec.queue)
    _runnable([spec])
    mode = spec.result.mode if spec.result is not None else "async"
    extra = await webhook_job_fields(request, spec.result)
    result = await services.scheduler.submit(spec, extra_fields=extra or None)
    job = result.job
    if mode == "stream":
        return await stream_result(request, job)
    if mode == "sync" and spec.result is not None:
        job = await wait_terminal(request, job, spec.result.timeout_secs)
        reply = SubmittedJob(**job.model_dump(), deduplicated=result.deduplicated)
        return respond(reply, 200 if job.status.terminal else 202)
    if wait > 0:
        job = await wait_terminal(request, job, wait)
    reply = SubmittedJob(**job.model_dump(), deduplicated=result.deduplicated)
    return respond(reply, 200 if result.deduplicated else 201)


@router.route("POST", "/api/jobs/bulk", roles=PRODUCERS, tag="jobs", body=BulkSubmit,
              response=BulkSubmitted, status=201,
              summary="Submit up to 1000 jobs of one queue atomically",
              errors=(400, 401, 403, 409, 413, 503))
async def submit_bulk(request: web.Request) -> web.Response:
    body = await read_model(request, BulkSubmit)
    principal(request).require(*{spec.queue for spec in body.jobs})
    jobs: list[JobSpec] = list(body.jobs)
    _runnable(jobs)
    results = await request.app[SERVICES].scheduler.submit_bulk(jobs)
    return respond(BulkSubmitted(jobs=[_submitted(r) for r in results]), 201)


@router.route("GET", "/api/jobs/{id}", roles=(*READERS, "worker"), tag="jobs", response=Job,
              summary="Get a job (a worker may read only jobs it holds)", errors=(401, 403, 404))
async def get_job(request: web.Request) -> web.Response:
    caller = principal(request)
    caller.require_job(request.match_info["id"])
    job = await request.app[SERVICES].scheduler.get(request.match_info["id"])
    if caller.role == "worker" and job.worker_id != caller.worker_id:
        raise errors.Forbidden("a worker may read only the jobs it holds")
    return respond(job)


@router.route("GET", "/api/jobs", roles=READERS, tag="jobs", response=JobPage,
              query={"queue": matching("queue name (default: default)", QUEUE_NAME.pattern),
                     "status": one_of("job status", JOB_STATUSES),
                     "workflow_id": "workflow id", "limit": integer("default 100", 1, 1000),
                     "cursor": matching("next_cursor of the previous page", "^[0-9]+$"),
                     "order": one_of("asc (enqueue order, default) or desc (newest first)",
                                     ("asc", "desc"))},
              summary="List jobs of a queue in enqueue order, with a cursor",
              errors=(400, 401, 403))
async def list_jobs(request: web.Request) -> web.Response:
    queue = request.query.get("queue", "default")
    if not QUEUE_NAME.match(queue):
        raise errors.InvalidArgument("queue must match " + QUEUE_NAME.pattern)
    principal(request).require(queue)
    status = query_status(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    order = request.query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise errors.InvalidArgument("order must be asc (enqueue order) or desc (newest first)")
    jobs, cursor = await request.app[SERVICES].scheduler.list_jobs(
        queue, status, request.query.get("workflow_id"), limit, request.query.get("cursor"),
        newest_first=order == "desc")
    return respond(JobPage(jobs=jobs, next_cursor=cursor))


@router.route("POST", "/api/jobs/{id}/cancel", roles=PRODUCERS, tag="jobs", response=Accepted,
              status=202, summary="Cancel a queued or running job (its lease learns it on "
              "its next heartbeat)", errors=(401, 403, 404, 409))
async def cancel(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    principal(request).require_job(job_id)
    previous = await request.app[SERVICES].scheduler.cancel(job_id)
    audit(request, "job.cancel", job_id=job_id)
    return respond(Accepted(id=job_id, status="cancelled", previous_status=previous), 202)


@router.route("POST", "/api/jobs/{id}/retry", roles=ADMIN, tag="jobs", response=Accepted,
              status=202, summary="Send a failed or cancelled job back to the queue",
              errors=(401, 403, 404, 409))
async def retry(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    principal(request).require_job(job_id)
    previous = await request.app[SERVICES].scheduler.retry(job_id)
    audit(request, "job.retry", job_id=job_id)
    return respond(Accepted(id=job_id, status="queued", previous_status=previous), 202)


