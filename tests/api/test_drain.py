"""Drain is immediate within one process: a waiting claim ends at once, and a claim whose script
ran while the drain landed hands its job back."""

from __future__ import annotations

import asyncio
import time

from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.workers import Claimant
from tests.api.harness import Api


async def test_drain_ends_the_workers_waiting_claim_and_no_other(api: Api) -> None:
    await api.ensure_worker("w-drained")
    await api.ensure_worker("w-other")
    drained = asyncio.create_task(api.claim("w-drained", queues=["dr1"], wait_secs=20))
    other = asyncio.create_task(api.claim("w-other", queues=["dr1"], wait_secs=20))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert (await api.post("/api/workers/w-drained/drain")).status == 200
    assert await drained is None
    assert time.monotonic() - started < 1.0
    assert not other.done()  # only the drained worker's claims end
    job = await api.submit(command="x", queue="dr1")
    assert (await other)["job"]["id"] == job["id"]


async def test_a_claim_granted_as_the_drain_lands_gives_its_job_back(api: Api) -> None:
    await api.ensure_worker("w-race")
    services = api.app[SERVICES]
    job = await api.submit(command="x", queue="dr2")
    who = await services.workers.claimant("w-race")  # read before the drain, as a claim does
    batch = await services.scheduler.claim("w-race", [], ["dr2"], None, 1)
    assert [c.job.id for c in batch.claims] == [job["id"]]
    assert (await api.post("/api/workers/w-race/drain")).status == 200

    assert await services.workers.keep_claims(who, batch.claims) == []
    after = await api.job(job["id"])
    assert after["status"] == "queued" and after["attempt"] == 0
    undrained = Claimant(who.worker_id, who.labels, False, who.registered_at_ms)
    assert (await api.post("/api/workers/w-race/undrain")).status == 200
    again = await services.scheduler.claim("w-race", [], ["dr2"], None, 1)
    assert await services.workers.keep_claims(undrained, again.claims) == again.claims
