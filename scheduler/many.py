"""Lease calls of one batch request (heartbeat, fail) sent together: each is its own fenced
script, all in one round trip (a pipeline; Cluster: one call each, at once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from leasehold.scheduler import codec, errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import QueueKeys
from leasehold.scheduler.models import FailOutcome, Heartbeat
from leasehold.scheduler.replies import fail_outcome, heartbeat_of
from leasehold.scheduler.scripts import Reply, raise_for

T = TypeVar("T")
Call = tuple[list[str], list[Any]]


async def _many(scheduler: Scheduler, name: str, lease_ids: Sequence[str],
                call: Callable[[str, str, QueueKeys], Call],
                read: Callable[[Reply, str, str], T]) -> dict[str, T | errors.SchedulerError]:
    """Each lease's outcome, or its error in its place: one lease's failure never affects
    another's."""
    found: dict[str, T | errors.SchedulerError] = {}
    calls: list[Call] = []
    sent: list[tuple[str, str]] = []
    for lease_id in lease_ids:
        try:
            job_id, q = scheduler.lease_target(lease_id)
        except errors.SchedulerError as exc:
            found[lease_id] = exc
            continue
        calls.append(call(lease_id, job_id, q))
        sent.append((lease_id, job_id))
    replies = await scheduler.scripts.many(name, calls,
                                           pipeline=not scheduler.settings.redis_cluster)
    for (lease_id, job_id), reply in zip(sent, replies, strict=True):
        try:
            raise_for(reply, lease_id=lease_id)
        except errors.SchedulerError as exc:
            found[lease_id] = exc
            continue
        found[lease_id] = read(reply, lease_id, job_id)
    return found


async def heartbeat_many(
    scheduler: Scheduler,
    leases: Sequence[tuple[str, float | None, int | None, str | None]],
    worker_id: str = "", now_ms: int | None = None,
) -> dict[str, Heartbeat | errors.SchedulerError]:
    """Heartbeats each (lease_id, lease_ttl_secs, progress, message)."""
    items = {lease[0]: lease for lease in leases}

    def call(lease_id: str, job_id: str, q: QueueKeys) -> Call:
        _, ttl, progress, message = items[lease_id]
        ttl_ms = codec.ms(ttl) if ttl is not None else None
        return scheduler.scripts.heartbeat_call(q, job_id, lease_id, worker_id, ttl_ms,
                                                progress, message, now_ms)

    return await _many(scheduler, "heartbeat", list(items), call, heartbeat_of)


async def fail_many(
    scheduler: Scheduler, failures: Sequence[tuple[str, str, bool]], worker_id: str = "",
    now_ms: int | None = None,
) -> dict[str, FailOutcome | errors.SchedulerError]:
    """Fails each (lease_id, error, retryable)."""
    items = {failure[0]: failure for failure in failures}

    def call(lease_id: str, job_id: str, q: QueueKeys) -> Call:
        _, error, retryable = items[lease_id]
        return scheduler.scripts.fail_call(q, job_id, lease_id, worker_id, error, retryable,
                                           now_ms)

    return await _many(scheduler, "fail", list(items), call,
                       lambda reply, _lease, _job: fail_outcome(reply))
