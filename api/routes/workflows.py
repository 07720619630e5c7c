"""Workflow routes: definitions, runs, status, cancel, run history, per-job views."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from leasehold.api.routes.logs import serve_log_read, serve_log_stream
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.audit import audit
from leasehold.api.server.guard import YAML_TYPES
from leasehold.api.server.http import principal, query_int, query_status, respond
from leasehold.api.server.routing import (
    ADMIN,
    JOB_STATUSES,
    PRODUCERS,
    READERS,
    WORKERS,
    integer,
    one_of,
    router,
)
from leasehold.scheduler.models import JobStatus
from leasehold.scheduler.workflow_defs import WorkflowDocument, load_document, parse
from leasehold.scheduler.workflows import RunSummary, WorkflowView


async def _allowed(request: web.Request, key: str = "id") -> str:
    """The workflow id of the path, after checking the caller may act in its queue."""
    workflow_id = request.match_info[key]
    caller = principal(request)
    if caller.queues is not None:
        definition = await request.app[SERVICES].workflows.definition(workflow_id)
        caller.require(definition.queue)
    return workflow_id


class RunStarted(BaseModel):
    id: str
    run_id: str
    started: bool  # false: a run was active, run_id names it and nothing changed
    jobs: dict[str, str]


class RunCancelled(BaseModel):
    id: str
    cancelled: int


class WorkflowDeleted(BaseModel):
    id: str
    deleted: bool = True
    cancelled: int  # unfinished jobs of the active run, cancelled first
    runs_deleted: int


@router.route("GET", "/api/workflows", roles=READERS, tag="workflows",
              response=list[WorkflowView],
              query={"limit": integer("default 100", 1, 1000),
                     "offset": integer("default 0", 0, 10**9),
                     "status": one_of("keep workflows with a job in this status", JOB_STATUSES)},
              summary="Workflows in creation order (bare array)", errors=(400, 401))
async def list_workflows(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    status = query_status(request)
    views = await request.app[SERVICES].workflows.list(limit, offset,
                                                       status.value if status else None)
    views = [view for view in views if principal(request).may(view.queue)]
    return respond(views if views else [])


@router.route("POST", "/api/workflows", roles=PRODUCERS, tag="workflows", response=WorkflowView,
              status=201, body=WorkflowDocument, yaml_body=True,
              summary="Create a workflow from JSON ({name, jobs: [...]}) or a "
              "workflow-graph definition (JSON or YAML with Content-Type application/yaml); "
              "409 when a job names a secret that is unknown or not allowed in the queue",
              errors=(400, 401, 403, 409, 413))
async def create_workflow(request: web.Request) -> web.Response:
    raw = await request.read()
    fmt = "yaml" if request.content_type in YAML_TYPES else "json"
    definition = parse(load_document(raw, fmt))
    principal(request).require(definition.queue)
    view = await request.app[SERVICES].workflows.create(definition)
    audit(request, "workflow.create", workflow_id=view.id)
    return respond(view, 201)


@router.route("POST", "/api/workflows/sample", roles=PRODUCERS, tag="workflows",
              response=WorkflowView, status=201,
              summary="Create (or reset) the sample 8-job workflow ci-1", errors=(401, 403))
async def create_sample(request: web.Request) -> web.Response:
    view = await request.app[SERVICES].workflows.create_sample()
    audit(request, "workflow.create", workflow_id=view.id)
    return respond(view, 201)


@router.route("GET", "/api/workflows/{id}/status", roles=READERS, tag="workflows",
              response=WorkflowView, summary="The workflow with its current run's job states",
              errors=(401, 404))
async def workflow_status(request: web.Request) -> web.Response:
    return respond(await request.app[SERVICES].workflows.status(await _allowed(request)))


@router.route("POST", "/api/workflows/{id}/run", roles=PRODUCERS, tag="workflows",
              response=RunStarted, status=202,
              summary="Start a fresh run: roots become claimable (while a run is active: "
              "started: false and that run's id, nothing changes)",
              errors=(401, 403, 404, 409))
async def run_workflow(request: web.Request) -> web.Response:
    workflow_id = await _allowed(request)
    run, started = await request.app[SERVICES].workflows.start(workflow_id)
    if started:
        audit(request, "workflow.run", workflow_id=workflow_id, run_id=run.run_id)
    return respond(RunStarted(id=workflow_id, run_id=run.run_id, started=started,
                              jobs=run.jobs), 202)


@router.route("POST", "/api/workflows/{id}/cancel", roles=PRODUCERS, tag="workflows",
              response=RunCancelled, status=202,
              summary="Cancel the active run's unfinished jobs", errors=(401, 403, 404))
async def cancel_workflow(request: web.Request) -> web.Response:
    workflow_id = await _allowed(request)
    count = await request.app[SERVICES].workflows.cancel(workflow_id)
    audit(request, "workflow.cancel", workflow_id=workflow_id)
    return respond(RunCancelled(id=workflow_id, cancelled=count), 202)


@router.route("DELETE", "/api/workflows/{id}", roles=ADMIN, tag="workflows",
              response=WorkflowDeleted,
              summary="Remove a workflow and its run history; an active run is cancelled first "
              "(its jobs stay readable until their result retention ends)",
              errors=(401, 403, 404))
async def delete_workflow(request: web.Request) -> web.Response:
    workflow_id = await _allowed(request)
    cancelled, runs = await request.app[SERVICES].workflows.delete(workflow_id)
    audit(request, "workflow.delete", workflow_id=workflow_id)
    return respond(WorkflowDeleted(id=workflow_id, cancelled=cancelled, runs_deleted=runs))


@router.route("GET", "/api/workflows/{id}/runs", roles=READERS, tag="workflows",
              response=list[RunSummary], summary="Run history, newest first",
              errors=(401, 404))
async def workflow_runs(request: web.Request) -> web.Response:
    runs = await request.app[SERVICES].workflows.runs(await _allowed(request))
    return respond(runs if runs else [])


@router.route("GET", "/api/jobs/{wf_id}/{job_id}/cancelled", roles=(*READERS, *WORKERS),
              tag="worker protocol", response=bool,
              summary="Whether a workflow job of the current run was cancelled (bare true/false)",
              errors=(401, 404))
async def job_cancelled(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    job_id = await services.workflows.job_of(await _allowed(request, "wf_id"),
                                             request.match_info["job_id"])
    job = await services.scheduler.get(job_id)
    return respond(job.status == JobStatus.CANCELLED)


@router.route("GET", "/api/workflows/{wf_id}/jobs/{job_id}/logs", roles=READERS, tag="logs",
              summary="A workflow job's log chunks", errors=(400, 401, 404))
async def workflow_job_logs(request: web.Request) -> web.Response:
    job_id = await request.app[SERVICES].workflows.job_of(await _allowed(request, "wf_id"),
                                                          request.match_info["job_id"])
    return await serve_log_read(request, job_id)


@router.route("GET", "/api/workflows/{wf_id}/jobs/{job_id}/logs/stream", roles=READERS,
              tag="logs", sse=True, summary="SSE of a workflow job's logs",
              errors=(400, 401, 404))
async def workflow_job_log_stream(request: web.Request) -> web.StreamResponse:
    job_id = await request.app[SERVICES].workflows.job_of(await _allowed(request, "wf_id"),
                                                          request.match_info["job_id"])
    return await serve_log_stream(request, job_id)
