"""The worker protocol: claim, and heartbeat/complete/fail/release by lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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
    FailNext,
    FailReplayed,
    FailReplayedNext,
    FailReply,
    HeartbeatReply,
    LeaseHeartbeat,
    LeaseResult,
    LeaseResults,
    LeaseResultsNext,
    NextClaim,
    Ok,
    OkNext,
    OkReplayed,
    OkReplayedNext,
    Release,
)
from leasehold.scheduler import errors, many
from leasehold.scheduler.core import ClaimBatch
from leasehold.scheduler.keys import job_of_lease, queue_of_job
from leasehold.scheduler.models import Claim
from leasehold.scheduler.service import Services
from leasehold.scheduler.workers import Claimant

LEASE_ERRORS = (401, 403, 409)


async def _claimant(request: web.Request, body: ClaimRequest | NextClaim
                    ) -> tuple[Claimant, list[str]]:
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
        raise errors.Forbidden("an admin token is no worker: name the worker it claims for "
                               "in worker_id")
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
    caller = principal(request)
    caller.require(*body.queues)
    generation = _generation(request, caller.generation)
    who, labels = await _claimant(request, body)
    services = request.app[SERVICES]
    services.workers.seen(who.worker_id)  # a claim is a sign of life, even one that waits
    claims = await _claim_for(services, who, labels, body.queues, body.lease_ttl_secs,
                              body.max_jobs or 1, body.wait_secs)
    claims = await services.workers.keep_claims(who, claims, generation)
    lifecycle.claimed(who.worker_id, claims)
    if body.max_jobs is not None:
        return respond(ClaimBatchReply(claims=claims))
    return respond(claims[0] if claims else None)


def _generation(request: web.Request, known: int) -> int:
    """The auth cache generation ``who`` is valid at: the token's own for a worker; for an
    admin, now (its claimant is read from the worker record after this)."""
    if principal(request).role == "worker":
        return known
    cache = request.app[SERVICES].tokens.cache
    return cache.generation if cache is not None else -1


async def _claim_for(services: Services, who: Claimant, labels: list[str], queues: list[str],
                     lease_ttl_secs: float | None, wanted: int, wait_secs: float
                     ) -> list[Claim]:
    if who.drain:
        return []
    if wait_secs > 0:
        batch = await services.waiters.claim(who.worker_id, labels, queues, lease_ttl_secs,
                                             wanted, wait_secs, who.registered_at_ms)
    else:
        batch = await services.scheduler.claim(who.worker_id, labels, queues, lease_ttl_secs,
                                               wanted)
    return batch.claims


@dataclass
class _Next:
    """A ``next`` claim, checked before the lease call finishes its job."""

    body: NextClaim
    who: Claimant
    labels: list[str]
    queues: list[str]
    generation: int
    same_queue: bool  # finish and claim in one script


async def _next_for(request: web.Request, body: NextClaim | None, lease_ids: list[str]
                    ) -> _Next | None:
    """Checks ``next`` like a claim (queue access, labels, worker) before anything changes."""
    if body is None:
        return None
    own = {queue_of_job(job_of_lease(lease_id) or "") for lease_id in lease_ids}
    queues = body.queues or sorted(q for q in own if q) or ["default"]
    caller = principal(request)
    caller.require(*queues)
    generation = _generation(request, caller.generation)
    who, labels = await _claimant(request, body)
    same = len(lease_ids) == 1 and own == {queues[0]} and len(queues) == 1 and not who.drain
    return _Next(body, who, labels, queues, generation, same)


async def _next_reply(request: web.Request, nxt: _Next, batch: ClaimBatch | None
                      ) -> list[Claim]:
    """The next claims: those the finishing script took, else a claim now (waiting if asked)."""
    services, body = request.app[SERVICES], nxt.body
    if batch is not None and (batch.claims or body.wait_secs <= 0 or batch.paused):
        claims = batch.claims
    else:
        claims = await _claim_for(services, nxt.who, nxt.labels, nxt.queues,
                                  body.lease_ttl_secs, body.max_jobs or 1, body.wait_secs)
    claims = await services.workers.keep_claims(nxt.who, claims, nxt.generation)
    lifecycle.claimed(nxt.who.worker_id, claims)
    return claims


def _with_next(reply: dict[str, Any], nxt: _Next, claims: list[Claim]) -> dict[str, Any]:
    if nxt.body.max_jobs is not None:
        reply["next"] = {"claims": claims}
    else:
        reply["next"] = claims[0] if claims else None
    return reply


@router.route("POST", "/api/jobs/{lease_id}/heartbeat", roles=WORKERS, tag="worker protocol",
              body=LeaseHeartbeat, response=HeartbeatReply,
              summary="Extend a lease; cancelled: true tells the worker to stop",
              errors=LEASE_ERRORS)
async def heartbeat(request: web.Request) -> web.Response:
    body = await read_model(request, LeaseHeartbeat, optional=True)
    lease_id, owner = request.match_info["lease_id"], principal(request).lease_owner
    services = request.app[SERVICES]
    with lifecycle.lease_call("lease_heartbeat", lease_id, owner, quiet=True):
        result = await services.scheduler.heartbeat(
            lease_id, owner, body.lease_ttl_secs, body.progress, body.message)
    services.workers.seen(result.lease.worker_id)
    return respond(HeartbeatReply(lease=result.lease, cancelled=result.cancelled))


@router.route("POST", "/api/jobs/{lease_id}/complete", roles=WORKERS, tag="worker protocol",
              body=Complete, response=Ok | OkReplayed | OkNext | OkReplayedNext,
              summary="Finish a job with success and outputs; the same call retried by the "
              "lease that completed the job gets 200 again with replayed: true. With next, "
              "also claim for the same worker (one script when in the job's own queue)",
              errors=(400, *LEASE_ERRORS, 404))
async def complete(request: web.Request) -> web.Response:
    body = await read_model(request, Complete, optional=True)
    services, owner = request.app[SERVICES], principal(request).lease_owner
    services.workers.seen(owner)
    lease_id = request.match_info["lease_id"]
    nxt = await _next_for(request, body.next, [lease_id])
    batch: ClaimBatch | None = None
    with lifecycle.lease_call("job_completed", lease_id, owner) as event:
        if nxt is not None and nxt.same_queue:
            done, batch = await services.scheduler.complete_claim(
                lease_id, owner, body.outputs, body.verification, nxt.who.worker_id,
                nxt.labels, nxt.body.lease_ttl_secs, nxt.body.max_jobs or 1)
        else:
            done = await services.scheduler.complete(lease_id, owner, body.outputs,
                                                     verification=body.verification)
        if done.replayed:
            event["replayed"] = True
        else:
            lifecycle.record_run(event, "success", done.run_ms)
    reply: dict[str, Any] = {"ok": True, "replayed": True} if done.replayed else {"ok": True}
    if nxt is not None:
        _with_next(reply, nxt, await _next_reply(request, nxt, batch))
    return respond(reply)


@router.route("POST", "/api/jobs/{lease_id}/fail", roles=WORKERS, tag="worker protocol",
              body=Fail, response=FailReply | FailReplayed | FailNext | FailReplayedNext,
              summary="Report a failure; retryable failures use an attempt and back off (the "
              "same call retried by that lease gets its first reply with replayed: true). "
              "With next, also claim for the same worker",
              errors=(400, *LEASE_ERRORS, 404))
async def fail(request: web.Request) -> web.Response:
    body = await read_model(request, Fail)
    services, owner = request.app[SERVICES], principal(request).lease_owner
    services.workers.seen(owner)
    lease_id = request.match_info["lease_id"]
    nxt = await _next_for(request, body.next, [lease_id])
    with lifecycle.lease_call("job_failed", lease_id, owner) as event:
        error = (await masked(request, lease_id, [body.error]))[0]
        outcome = await services.scheduler.fail(lease_id, error, owner, body.retryable)
        event["will_retry"] = outcome.will_retry
        if outcome.replayed:
            event["replayed"] = True
        else:
            lifecycle.record_run(event, "retry" if outcome.will_retry else "failure",
                                 outcome.run_ms)
    kind = FailReplayed if outcome.replayed else FailReply
    reply = kind(will_retry=outcome.will_retry, retry_at_ms=outcome.retry_at_ms).model_dump()
    if nxt is not None:
        _with_next(reply, nxt, await _next_reply(request, nxt, None))
    return respond(reply)


@router.route("POST", "/api/jobs/{lease_id}/release", roles=WORKERS, tag="worker protocol",
              body=Release, response=Ok | OkReplayed | OkNext | OkReplayedNext,
              summary="Hand a job back without consuming an attempt (retried by the same "
              "lease: 200 again with replayed: true). With next, also claim for the same worker",
              errors=(400, *LEASE_ERRORS, 404))
async def release(request: web.Request) -> web.Response:
    body = await read_model(request, Release, optional=True)
    services = request.app[SERVICES]
    lease_id, owner = request.match_info["lease_id"], principal(request).lease_owner
    services.workers.seen(owner)
    nxt = await _next_for(request, body.next, [lease_id])
    with lifecycle.lease_call("job_released", lease_id, owner) as event:
        replayed = await services.scheduler.release(lease_id, owner)
        if replayed:
            event["replayed"] = True
    reply: dict[str, Any] = {"ok": True, "replayed": True} if replayed else {"ok": True}
    if nxt is not None:
        _with_next(reply, nxt, await _next_reply(request, nxt, None))
    return respond(reply)


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
    request.app[SERVICES].workers.seen(owner)
    items = {item.lease_id: item for item in body.leases}
    # One heartbeat script per lease, all in one round trip.
    outcomes = await many.heartbeat_many(scheduler, [
        (lease_id, item.lease_ttl_secs, item.progress, item.message)
        for lease_id, item in items.items()], owner)

    async def act(lease_id: str) -> LeaseResult:
        with lifecycle.lease_call("lease_heartbeat", lease_id, owner, quiet=True):
            beat = outcomes[lease_id]
            if isinstance(beat, errors.SchedulerError):
                raise beat
        return LeaseResult(lease_id=lease_id, ok=True, expires_at_ms=beat.lease.expires_at_ms,
                           cancelled=beat.cancelled)

    return respond(await _each(list(items), act))


@router.route("POST", "/api/leases/complete", roles=WORKERS, tag="worker protocol",
              body=BatchComplete, response=LeaseResults | LeaseResultsNext,
              summary="Complete many leases in one request, each fenced on its own; with next, "
              "also claim for the same worker (claims: [...])",
              errors=(400, 401, 403, 404))
async def batch_complete(request: web.Request) -> web.Response:
    body = await read_model(request, BatchComplete)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    request.app[SERVICES].workers.seen(owner)
    items = {item.lease_id: item for item in body.completions}
    nxt = await _next_for(request, body.next, list(items))
    # One complete script per lease, all in one round trip; each outcome is logged on its own.
    outcomes = await scheduler.complete_many(
        [(lease_id, item.outputs) for lease_id, item in items.items()], owner)

    async def act(lease_id: str) -> LeaseResult:
        with lifecycle.lease_call("job_completed", lease_id, owner) as event:
            outcome = outcomes[lease_id]
            if isinstance(outcome, errors.SchedulerError):
                raise outcome
            if not outcome.replayed:
                lifecycle.record_run(event, "success", outcome.run_ms)
        return LeaseResult(lease_id=lease_id, ok=True, replayed=outcome.replayed or None)

    return await _batch_reply(request, await _each(list(items), act), nxt)


async def _batch_reply(request: web.Request, results: LeaseResults, nxt: _Next | None
                       ) -> web.Response:
    if nxt is None:
        return respond(results)
    claims = await _next_reply(request, nxt, None)
    return respond({"results": results.model_dump()["results"], "claims": claims})


async def _masked_error(request: web.Request, lease_id: str, error: str) -> str:
    """A batch item's error with its job's secrets masked; an unknown lease fails on its own."""
    try:
        return (await masked(request, lease_id, [error]))[0]
    except errors.SchedulerError:
        return error


@router.route("POST", "/api/leases/fail", roles=WORKERS, tag="worker protocol", body=BatchFail,
              response=LeaseResults | LeaseResultsNext,
              summary="Fail many leases in one request, each fenced on its own; with next, "
              "also claim for the same worker (claims: [...])",
              errors=(400, 401, 403, 404))
async def batch_fail(request: web.Request) -> web.Response:
    body = await read_model(request, BatchFail)
    scheduler, owner = request.app[SERVICES].scheduler, principal(request).lease_owner
    request.app[SERVICES].workers.seen(owner)
    items = {item.lease_id: item for item in body.failures}
    nxt = await _next_for(request, body.next, list(items))
    # One fail script per lease, all in one round trip.
    texts = {lease_id: await _masked_error(request, lease_id, item.error)
             for lease_id, item in items.items()}  # a secret echoed in an error is not stored
    outcomes = await many.fail_many(scheduler, [
        (lease_id, texts[lease_id], item.retryable) for lease_id, item in items.items()], owner)

    async def act(lease_id: str) -> LeaseResult:
        with lifecycle.lease_call("job_failed", lease_id, owner) as event:
            outcome = outcomes[lease_id]
            if isinstance(outcome, errors.SchedulerError):
                raise outcome
            event["will_retry"] = outcome.will_retry
            if not outcome.replayed:
                lifecycle.record_run(event, "retry" if outcome.will_retry else "failure",
                                     outcome.run_ms)
        return LeaseResult(lease_id=lease_id, ok=True, will_retry=outcome.will_retry,
                           retry_at_ms=outcome.retry_at_ms, replayed=outcome.replayed or None)

    return await _batch_reply(request, await _each(list(items), act), nxt)


