"""What the protocol adapters share: who is calling, claiming one job, a job's current lease."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.routes import lifecycle
from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.scheduler import errors
from leasehold.scheduler.auth import ANONYMOUS_ADMIN, Principal
from leasehold.scheduler.models import Claim
from leasehold.scheduler.workers import Claimant


async def identify(request: web.Request, token: str | None,
                   worker_id: str | None = None) -> Principal | None:
    """The caller a seed's own headers name, or None when they prove nothing.

    The token is checked against the same store as ``Authorization: Bearer`` (SHA-256 digests
    only), so a token never does more through an adapter than through the native API. With auth
    off, a named worker acts as itself (its registered labels) and anyone else as admin.
    """
    services = request.app[SERVICES]
    if not request.app[SETTINGS].auth:
        if not worker_id:
            return ANONYMOUS_ADMIN
        try:
            who = await services.workers.claimant(worker_id)
        except errors.WorkerNotFound:
            return None
        return Principal(kind="anonymous", role="worker", worker_id=worker_id, labels=who.labels,
                         drain=who.drain, registered_at_ms=who.registered_at_ms)
    if not token:
        return None
    found = await services.tokens.authenticate(token)
    if found is None:
        return None
    if found.role == "worker" and worker_id and worker_id != found.worker_id:
        return None
    return found


async def claim_one(request: web.Request, who: Principal, queues: list[str],
                    lease_ttl_secs: float | None = None) -> Claim | None:
    """One job for worker ``who`` (with its registered labels) from ``queues``, or None."""
    if who.role != "worker":
        raise errors.Forbidden("only a worker claims jobs")
    who.require(*queues)
    services = request.app[SERVICES]
    services.workers.seen(who.worker_id)
    if who.drain:
        return None
    claimant = Claimant(who.worker_id, who.labels, who.drain, who.registered_at_ms)
    batch = await services.scheduler.claim(who.worker_id, sorted(who.labels), queues,
                                           lease_ttl_secs, 1)
    claims = await services.workers.keep_claims(claimant, batch.claims)
    lifecycle.claimed(who.worker_id, claims)
    return claims[0] if claims else None


async def lease_of(request: web.Request, job_id: str) -> str:
    """The current lease of a running job (the seeds name jobs, not leases); the lease script
    still checks that the caller owns it."""
    record = await request.app[SERVICES].scheduler.raw_record(job_id)
    if not record:
        raise errors.JobNotFound("no such job", job_id=job_id)
    lease_id = record.get("lease_id", "")
    if record.get("status") != "running" or not lease_id:
        raise errors.LeaseNotFound("the job is not running", job_id=job_id)
    return lease_id
