"""Job lifecycle events for the worker routes: one log line per claim, outcome and lost lease."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog

from leasehold.api.server.metrics import observe_run
from leasehold.scheduler import errors
from leasehold.scheduler.keys import job_of_lease, queue_of_job
from leasehold.scheduler.models import Claim

log = structlog.get_logger("leasehold.jobs")


def claimed(worker_id: str, claims: list[Claim]) -> None:
    for claim in claims:
        log.info("job_claimed", job_id=claim.job.id, lease_id=claim.lease.lease_id,
                 worker_id=worker_id, queue=claim.job.queue, attempt=claim.lease.attempt)


@contextlib.contextmanager
def lease_call(event: str, lease_id: str, worker_id: str,
               quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Logs ``event`` when the block succeeds, ``lease_lost`` (with the reason) when it is lost.

    The block may add fields to the yielded dict. ``quiet`` logs success at debug level only
    (heartbeats would drown everything else). ``worker_id`` "" = an admin acting on the lease.
    """
    job_id = job_of_lease(lease_id)
    fields: dict[str, Any] = {"job_id": job_id, "lease_id": lease_id,
                              "worker_id": worker_id or None,
                              "queue": queue_of_job(job_id) if job_id else None}
    try:
        yield fields
    except errors.LeaseLost as exc:
        log.warning("lease_lost", call=event, reason=exc.code, **fields)
        raise
    if quiet:
        log.debug(event, **fields)
    else:
        log.info(event, **fields)


def record_run(fields: dict[str, Any], outcome: str, run_ms: int) -> None:
    """Observes the attempt's run time (the script returned it: no extra round trip)."""
    if fields["queue"] is not None:
        observe_run(fields["queue"], outcome, run_ms)
        fields["run_ms"] = run_ms
