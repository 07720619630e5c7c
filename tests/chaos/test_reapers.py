"""Reaper faults: ``kill -9`` of the only reaper while a worker dies (F3), and two or three
reapers racing over the same expired leases (F4)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.chaos.fleet import LEASE_TTL_SECS, Lab
from tests.chaos.observe import job_records, redis_now_ms
from tests.chaos.scenario import start
from tests.processes import wait_for

pytestmark = pytest.mark.timeout(60)


async def test_jobs_of_a_dead_worker_wait_for_a_reaper_while_due_jobs_still_run(
        lab: Lab) -> None:
    sc = await start(lab, reapers=0)
    url = sc.servers[0]
    reaper = sc.fleet.reaper()
    victim = await sc.fleet.agent(url, sc.queue, slots=2)
    async with sc.producer(work_secs=0.8) as producer:
        first = await producer.run(2, concurrency=2)
        await wait_for(lambda: len(victim.started()) == 2, 10, "the victim to start both jobs")
        reaper.kill()
        victim.kill()
        orphans = {s.job_id for s in first}

        # with no reaper, a claim still promotes due delayed jobs: new work runs meanwhile
        await sc.fleet.agent(url, sc.queue, slots=2)
        delayed = await producer.run(4, concurrency=4, delay_secs=0.3)
        delayed_ids = {s.job_id for s in delayed}
        assert all(s.outcome == "ok" for s in delayed)

        async def delayed_done() -> bool:
            records = await job_records(sc.redis, sc.fleet.namespace, [sc.queue])
            return all(r.status == "success" for r in records if r.job_id in delayed_ids)

        await wait_for(delayed_done, 15, "the delayed jobs to run without a reaper")
        await asyncio.sleep(LEASE_TTL_SECS)
        now = await redis_now_ms(sc.redis)
        stranded = [r for r in await job_records(sc.redis, sc.fleet.namespace, [sc.queue])
                    if r.job_id in orphans]
        # documented: expired leases are recovered by a reaper, not by claims
        assert all(r.status == "running" and r.lease_expires_at_ms < now for r in stranded)

        sc.fleet.reaper()  # any reaper, started again, recovers them
        report = await sc.verdict()
    assert report.counts["ok"] == 6
    requeued = Counter(t.job for t in sc.tail.transitions()
                       if t.src == "running" and t.dst == "queued")
    assert requeued == dict.fromkeys(orphans, 1)  # one expiry per lost lease, no double re-enqueue


@pytest.mark.parametrize("reapers", [2, 3])
async def test_concurrent_reapers_expire_each_lease_exactly_once(lab: Lab, reapers: int) -> None:
    sc = await start(lab, reapers=0)
    url = sc.servers[0]
    for _ in range(reapers):
        sc.fleet.reaper(interval=0.05)
    jobs = 30
    async with sc.producer(work_secs=0.01) as producer, sc.fleet.client(url) as admin:
        await producer.run(jobs, concurrency=6)
        # "ghost" workers lease every job and vanish, twice: each lease must expire once
        for round_ in range(2):
            await admin.register([], worker_id=f"ghost{round_}")
            reply = await admin.request("POST", "/api/jobs/claim", {
                "worker_id": f"ghost{round_}", "queues": [sc.queue], "max_jobs": jobs,
                "lease_ttl_secs": 0.3, "wait_secs": 5})
            assert len(reply["claims"]) == jobs

            async def requeued(attempt: int = round_ + 1) -> bool:
                records = await job_records(sc.redis, sc.fleet.namespace, [sc.queue])
                return all(r.status == "queued" and r.attempt == attempt for r in records)

            await wait_for(requeued, 10, "the reapers to hand every job back")
        await sc.fleet.agent(url, sc.queue, slots=4)
        report = await sc.verdict()
        stats = await admin.request("GET", f"/api/queues/{sc.queue}")

    assert report.counts["ok"] == jobs
    assert stats["counters"]["leases_expired"] == 2 * jobs
    assert stats["counters"]["retried"] == 2 * jobs
    expiries = Counter(t.lease for t in sc.tail.transitions()
                       if t.src == "running" and t.dst == "queued")
    assert len(expiries) == 2 * jobs and set(expiries.values()) == {1}
    attempts = Counter(t.attempt for t in sc.tail.transitions() if t.dst == "success")
    assert attempts == {2: jobs}
