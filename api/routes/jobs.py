"""Producer routes: submit (single, bulk, sync wait), read, list, cancel and retry jobs."""

from __future__ import annotations

import asyncio

from aiohttp import web

from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.http import (
    principal,
    query_float,
    query_int,
    query_status,
    read_model,
    respond,
)
from leasehold.api.server.routing import ADMIN, PRODUCERS, READERS, router
from leasehold.api.wire import Accepted, BulkSubmit, BulkSubmitted, JobPage, SubmittedJob
from leasehold.scheduler import errors
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.models import Job, JobSpec, Submitted

SYNC_POLL_SECS = 0.05
MAX_SYNC_WAIT_SECS = 60.0


def _runnable(specs: list[JobSpec]) -> None:
    """A job gives a worker something to run: a ``command``, a ``payload``, or both."""
    for index, spec in enumerate(specs):
        if spec.command is None and spec.payload is None:
            where = f"jobs[{index}]: " if len(specs) > 1 else ""
            raise errors.InvalidArgument(f"{where}a job needs a command or a payload")


def _submitted(result: Submitted) -> SubmittedJob:
    return SubmittedJob(**result.job.model_dump(), deduplicated=result.deduplicated)


@router.route("POST", "/api/jobs", roles=PRODUCERS, tag="jobs", body=JobSpec,
              response=SubmittedJob, status=201, also=(200,), query={"wait_secs": "number ≤ 60"},
              summary="Submit a job (200 + deduplicated when unique_key matched)",
              errors=(400, 401, 403, 413, 503))
async def submit(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    wait = query_float(request, "wait_secs", 0, 0, MAX_SYNC_WAIT_SECS)
    spec = await read_model(request, JobSpec)
    _runnable([spec])
    result = await services.scheduler.submit(spec)
    job = result.job
    if wait > 0:
        job = await _wait_terminal(request, job, wait)
    reply = SubmittedJob(**job.model_dump(), deduplicated=result.deduplicated)
    return respond(reply, 200 if result.deduplicated else 201)


async def _wait_terminal(request: web.Request, job: Job, wait_secs: float) -> Job:
    """Sync mode: the job as it is when it ends, or when ``wait_secs`` run out."""
    scheduler = request.app[SERVICES].scheduler
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_secs
    delay = SYNC_POLL_SECS
    while not job.status.terminal and loop.time() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 1.0)
        job = await scheduler.get(job.id)
    return job


@router.route("POST", "/api/jobs/bulk", roles=PRODUCERS, tag="jobs", body=BulkSubmit,
              response=BulkSubmitted, status=201,
              summary="Submit up to 1000 jobs of one queue atomically",
              errors=(400, 401, 403, 413, 503))
async def submit_bulk(request: web.Request) -> web.Response:
    body = await read_model(request, BulkSubmit)
    _runnable(body.jobs)
    results = await request.app[SERVICES].scheduler.submit_bulk(body.jobs)
    return respond(BulkSubmitted(jobs=[_submitted(r) for r in results]), 201)


@router.route("GET", "/api/jobs/{id}", roles=(*READERS, "worker"), tag="jobs", response=Job,
              summary="Get a job (a worker may read only jobs it holds)", errors=(401, 403, 404))
async def get_job(request: web.Request) -> web.Response:
    job = await request.app[SERVICES].scheduler.get(request.match_info["id"])
    caller = principal(request)
    if caller.role == "worker" and job.worker_id != caller.worker_id:
        raise errors.Forbidden("a worker may read only the jobs it holds")
    return respond(job)


@router.route("GET", "/api/jobs", roles=READERS, tag="jobs", response=JobPage,
              query={"queue": "queue name (default: default)", "status": "job status",
                     "workflow_id": "workflow id", "limit": "1..1000 (default 100)",
                     "cursor": "next_cursor of the previous page",
                     "order": "asc (enqueue order, default) or desc (newest first)"},
              summary="List jobs of a queue in enqueue order, with a cursor",
              errors=(400, 401, 403))
async def list_jobs(request: web.Request) -> web.Response:
    queue = request.query.get("queue", "default")
    if not QUEUE_NAME.match(queue):
        raise errors.InvalidArgument("queue must match " + QUEUE_NAME.pattern)
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
    previous = await request.app[SERVICES].scheduler.cancel(job_id)
    return respond(Accepted(id=job_id, status="cancelled", previous_status=previous), 202)


@router.route("POST", "/api/jobs/{id}/retry", roles=ADMIN, tag="jobs", response=Accepted,
              status=202, summary="Send a failed or cancelled job back to the queue",
              errors=(401, 403, 404, 409))
async def retry(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    previous = await request.app[SERVICES].scheduler.retry(job_id)
    return respond(Accepted(id=job_id, status="queued", previous_status=previous), 202)


