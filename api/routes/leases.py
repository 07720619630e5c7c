"""The worker protocol: claim, and heartbeat/complete/fail/release by lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from leasehold.api.routes import lifecycle
from leasehold.api.routes.secrets import masked
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.http import principal, read_model, respond
from leasehold.api.server.routing import WORKERS, router
from leasehold.api.wire import (
    BatchComplete,
    BatchFail,
    BatchHeartbeat,
    ClaimBatchReply,
    ClaimRequest,
    Complete,
    Fail,
    FailReply,
    HeartbeatReply,
    LeaseHeartbeat,
    LeaseResult,
    LeaseResults,
    Ok,
)
from leasehold.scheduler import errors
from leasehold.scheduler.models import Claim
from leasehold.scheduler.workers import Claimant

LEASE_ERRORS = (401, 403, 409)


async def _claimant(request: web.Request, body: ClaimRequest) -> tuple[Claimant, list[str]]:
    """The registered worker a claim is for, and the labels it claims with.

    A worker token claims only for itself and only with labels it registered (its registered
    labels when the body names none); an admin claims for a registered worker, with any labels.
    """
    caller = principal(request)
    if caller.role == "worker":
        if body.worker_id not in (None, caller.worker_id):
            raise errors.Forbidden("a worker token claims only for its own worker_id")
        who = Claimant(caller.worker_id, caller.labels, caller.drain, caller.registered_at_ms)
        if "labels" not in body.model_fields_set:
            return who, sorted(who.labels)
        extra = set(body.labels) - who.labels
        if extra:
            raise errors.LabelsNotRegistered(
                "a worker claims only with labels it registered; an admin can change them "
                "with PATCH /api/workers/{id}", labels=sorted(extra))
        return who, body.labels
    if not body.worker_id:
        raise errors.InvalidArgument("worker_id is required")
    who = await request.app[SERVICES].workers.claimant(body.worker_id)
    return who, body.labels if "labels" in body.model_fields_set else sorted(who.labels)


@router.route("POST", "/api/jobs/claim", roles=WORKERS, tag="worker protocol", body=ClaimRequest,
              response=Claim | ClaimBatchReply | None,
              summary="Claim the best matching job: {job, lease} or null; with max_jobs, "
              "{claims: [...]}; wait_secs long-polls. A worker token claims with labels it "
              "registered (403 labels_not_registered otherwise); an admin names a registered "
              "worker (404 worker_not_found otherwise)",
              errors=(400, 401, 403, 404, 503))
async def claim(request: web.Request) -> web.Response:
    body = await read_model(request, ClaimRequest)
    principal(request).require(*body.queues)
    who, labels = await _claimant(request, body)
    worker_id = who.worker_id
    services = request.app[SERVICES]
    wanted = body.max_jobs or 1
    if who.drain:
        claims: list[Claim] = []
    elif body.wait_secs > 0:
        batch = await services.waiters.claim(worker_id, labels, body.queues,
                                             body.lease_ttl_secs, wanted, body.wait_secs)
        claims = batch.claims
    else:
        batch = await services.scheduler.claim(worker_id, labels, body.queues,
                                               body.lease_ttl_secs, wanted)
        claims = batch.claims
    claims = await services.workers.keep_claims(who, claims)
    lifecycle.claimed(worker_id, claims)
    if body.max_jobs is not None:
        return respond(ClaimBatchReply(claims=claims))
    return respond(claims[0] if claims else None)


@router.route("POST", "/api/jobs/{lease_id}/heartbeat", roles=WORKERS, tag="worker protocol",
              body=LeaseHeartbeat, response=HeartbeatReply,
              summary="Extend a lease; cancelled: true tells the worker to stop",
              errors=LEASE_ERRORS)
async def heartbeat(request: web.Request) -> web.Response:
    body = await read_model(request, LeaseHeartbeat, optional=True)
    lease_id, owner = request.match_info["lease_id"], principal(request).lease_owner
    with lifecycle.lease_call("lease_heartbeat", lease_id, owner, quiet=True):
        result = await request.app[SERVICES].scheduler.heartbeat(
            lease_id, owner, body.lease_ttl_secs, body.progress, body.message)
    return respond(HeartbeatReply(lease=result.lease, cancelled=result.cancelled))


@router.route("POST", "/api/jobs/{lease_id}/complete", roles=WORKERS, tag="worker protocol",
              body=Complete, response=Ok, summary="Finish a job with success and outputs",
              errors=LEASE_ERRORS)
async def complete(request: web.Request) -> web.Response:
    body = await read_model(request, Complete, optional=True)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    with lifecycle.lease_call("job_completed", request.match_info["lease_id"], owner) as event:
        run_ms = await scheduler.complete(event["lease_id"], owner, body.outputs,
                                          verification=body.verification)
        lifecycle.record_run(event, "success", run_ms)
    return respond(Ok())


@router.route("POST", "/api/jobs/{lease_id}/fail", roles=WORKERS, tag="worker protocol",
              body=Fail, response=FailReply,
              summary="Report a failure; retryable failures use an attempt and back off",
              errors=LEASE_ERRORS)
async def fail(request: web.Request) -> web.Response:
    body = await read_model(request, Fail)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    with lifecycle.lease_call("job_failed", request.match_info["lease_id"], owner) as event:
        error = (await masked(request, event["lease_id"], [body.error]))[0]
        outcome = await scheduler.fail(event["lease_id"], error, owner, body.retryable)
        event["will_retry"] = outcome.will_retry
        lifecycle.record_run(event, "retry" if outcome.will_retry else "failure", outcome.run_ms)
    return respond(FailReply(will_retry=outcome.will_retry, retry_at_ms=outcome.retry_at_ms))


@router.route("POST", "/api/jobs/{lease_id}/release", roles=WORKERS, tag="worker protocol",
              response=Ok, summary="Hand a job back without consuming an attempt",
              errors=LEASE_ERRORS)
async def release(request: web.Request) -> web.Response:
    lease_id, owner = request.match_info["lease_id"], principal(request).lease_owner
    with lifecycle.lease_call("job_released", lease_id, owner):
        await request.app[SERVICES].scheduler.release(lease_id, owner)
    return respond(Ok())


async def _each(
    items: list[str], act: Callable[[str], Awaitable[LeaseResult]]
) -> LeaseResults:
    """Runs one fenced call per lease; one lease's failure never affects another's."""

    async def one(lease_id: str) -> LeaseResult:
        try:
            return await act(lease_id)
        except errors.SchedulerError as exc:
            if isinstance(exc, errors.ScriptContractError):
                raise
            return LeaseResult(lease_id=lease_id, ok=False, error=exc.code, message=exc.message)

    return LeaseResults(results=list(await asyncio.gather(*(one(i) for i in items))))


@router.route("POST", "/api/leases/heartbeat", roles=WORKERS, tag="worker protocol",
              body=BatchHeartbeat, response=LeaseResults,
              summary="Heartbeat many leases in one request, each fenced on its own",
              errors=(400, 401, 403))
async def batch_heartbeat(request: web.Request) -> web.Response:
    body = await read_model(request, BatchHeartbeat)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    items = {item.lease_id: item for item in body.leases}

    async def act(lease_id: str) -> LeaseResult:
        item = items[lease_id]
        with lifecycle.lease_call("lease_heartbeat", lease_id, owner, quiet=True):
            beat = await scheduler.heartbeat(lease_id, owner, item.lease_ttl_secs,
                                             item.progress, item.message)
        return LeaseResult(lease_id=lease_id, ok=True, expires_at_ms=beat.lease.expires_at_ms,
                           cancelled=beat.cancelled)

    return respond(await _each(list(items), act))


@router.route("POST", "/api/leases/complete", roles=WORKERS, tag="worker protocol",
              body=BatchComplete, response=LeaseResults,
              summary="Complete many leases in one request, each fenced on its own",
              errors=(400, 401, 403))
async def batch_complete(request: web.Request) -> web.Response:
    body = await read_model(request, BatchComplete)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    items = {item.lease_id: item for item in body.completions}
    # One complete script per lease, all in one round trip; each outcome is logged on its own.
    outcomes = await scheduler.complete_many(
        [(lease_id, item.outputs) for lease_id, item in items.items()], owner)

    async def act(lease_id: str) -> LeaseResult:
        with lifecycle.lease_call("job_completed", lease_id, owner) as event:
            outcome = outcomes[lease_id]
            if isinstance(outcome, errors.SchedulerError):
                raise outcome
            lifecycle.record_run(event, "success", outcome)
        return LeaseResult(lease_id=lease_id, ok=True)

    return respond(await _each(list(items), act))


@router.route("POST", "/api/leases/fail", roles=WORKERS, tag="worker protocol", body=BatchFail,
              response=LeaseResults,
              summary="Fail many leases in one request, each fenced on its own",
              errors=(400, 401, 403))
async def batch_fail(request: web.Request) -> web.Response:
    body = await read_model(request, BatchFail)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    items = {item.lease_id: item for item in body.failures}

    async def act(lease_id: str) -> LeaseResult:
        item = items[lease_id]
        with lifecycle.lease_call("job_failed", lease_id, owner) as event:
            error = (await masked(request, lease_id, [item.error]))[0]
            outcome = await scheduler.fail(lease_id, error, owner, item.retryable)
            event["will_retry"] = outcome.will_retry
            lifecycle.record_run(event, "retry" if outcome.will_retry else "failure",
                                 outcome.run_ms)
        return LeaseResult(lease_id=lease_id, ok=True, will_retry=outcome.will_retry,
                           retry_at_ms=outcome.retry_at_ms)

    return respond(await _each(list(items), act))


