"""Decodes the lease scripts' replies that are not errors into their typed outcomes."""

from __future__ import annotations

from leasehold.scheduler import codec
from leasehold.scheduler.models import FailOutcome, Finished, Heartbeat, Lease
from leasehold.scheduler.scripts import Reply


def heartbeat_of(reply: Reply, lease_id: str, job_id: str) -> Heartbeat:
    """The heartbeat script's OK reply."""
    _, expires, ttl, granted, attempt, cancelled, owner, name, workflow_id = reply
    return Heartbeat(
        lease=Lease(lease_id=lease_id, job_id=name or job_id, workflow_id=workflow_id or None,
                    worker_id=owner or "",
                    ttl_secs=codec.secs(int(ttl)), granted_at_ms=int(granted),
                    expires_at_ms=int(expires), attempt=int(attempt)),
        cancelled=bool(int(cancelled)),
    )


def fail_outcome(reply: Reply) -> FailOutcome:
    """The fail script's reply that is not an error."""
    replayed = reply[0] == "REPLAYED"
    if replayed:
        reply = [*reply[1:], 0]  # {kind, due}: the run time was observed the first time
    run_ms = int(reply[2] or 0)
    if reply[0] == "RETRY":
        return FailOutcome(will_retry=True, retry_at_ms=int(reply[1]), run_ms=run_ms,
                           replayed=replayed)
    return FailOutcome(will_retry=False, run_ms=run_ms, replayed=replayed)


def finished_of(reply: Reply) -> Finished:
    """``{"OK", run_ms}`` or ``{"REPLAYED", "OK", ""}`` of the complete script."""
    if reply[0] == "REPLAYED":
        return Finished(run_ms=0, replayed=True)  # metrics observed the first reply
    return Finished(run_ms=int(reply[1]))
