"""Many clients at once: claims never hand out a job twice, reapers never re-enqueue one twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import cast

import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import ClaimBatch, Scheduler
from leasehold.scheduler.keys import label_set_id
from leasehold.scheduler.models import JobSpec, RetryPolicy
from leasehold.scheduler.reaper import Reaper

T0 = 1_700_000_000_000
QUEUE = "default"

Connect = Callable[[Settings], Awaitable[Scheduler]]


@pytest.fixture
async def connect(redis_url: str) -> AsyncIterator[Connect]:
    """Schedulers that each own a separate client (separate connections), as separate
    processes would; all are closed at the end."""
    async with AsyncExitStack() as stack:

        async def make(settings: Settings) -> Scheduler:
            client = aioredis.Redis.from_url(redis_url, decode_responses=True)
            stack.push_async_callback(client.aclose)
            await client.ping()  # connected before the race starts
            sched = Scheduler(client, settings)
            await sched.start()
            return sched

        yield make


async def test_twenty_claimers_share_five_jobs_without_duplicates(
    scheduler: Scheduler, settings: Settings, connect: Connect
) -> None:
    await scheduler.submit_bulk([JobSpec() for _ in range(5)], now_ms=T0)
    claimers = [await connect(settings) for _ in range(20)]

    batches: list[ClaimBatch] = await asyncio.gather(
        *(c.claim(f"w{n}", [], now_ms=T0 + 1) for n, c in enumerate(claimers))
    )

    won = [b.claims[0] for b in batches if b.claims]
    assert len(won) == 5 and sum(not b.claims for b in batches) == 15
    assert len({c.job.id for c in won}) == 5
    assert len({c.lease.lease_id for c in won}) == 5
    assert (await scheduler.counters(QUEUE))["claimed"] == 5


JOBS = 10_000
TTL_SECS = 10


async def _submit_and_claim_all(scheduler: Scheduler) -> list[str]:
    spec = JobSpec(retry_policy=RetryPolicy(max_retries=1), lease_ttl_secs=TTL_SECS)
    for _ in range(JOBS // 1000):
        await scheduler.submit_bulk([spec] * 1000, now_ms=T0)
    claimed: list[str] = []
    for n in range(JOBS // 100):
        batch = await scheduler.claim(f"doomed{n}", [], max_jobs=100, now_ms=T0 + 1)
        claimed += [c.job.id for c in batch.claims]
    assert len(set(claimed)) == JOBS
    return claimed


async def test_three_reapers_requeue_each_expired_lease_once(
    settings: Settings, connect: Connect
) -> None:
    # Small batches, so the three reapers' script calls interleave many times.
    settings = settings.model_copy(update={"events_maxlen": 100_000, "reap_batch": 200})
    scheduler = await connect(settings)
    job_ids = await _submit_and_claim_all(scheduler)
    reapers = [Reaper(await connect(settings)) for _ in range(3)]
    expired_at = T0 + 1 + TTL_SECS * 1000 + 1

    expired = 0
    for _ in range(3):
        reports = await asyncio.gather(*(r.run_once(now_ms=expired_at) for r in reapers))
        expired += sum(report.expired for report in reports)

    assert expired == JOBS
    counters = await scheduler.counters(QUEUE)
    assert (counters["leases_expired"], counters["retried"]) == (JOBS, JOBS)
    q = scheduler.queue_keys(QUEUE)
    assert await scheduler.redis.zcard(q.leases) == 0
    members = cast(list[str], await scheduler.redis.zrange(q.ready(label_set_id([])), 0, -1))
    in_ready = Counter(member.split("|", 1)[1] for member in members)
    assert set(in_ready) == set(job_ids) and set(in_ready.values()) == {1}
    async with scheduler.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(q.job(job_id), "attempt", "status")
        records = await pipe.execute()
    assert {tuple(record) for record in records} == {("1", "queued")}
    events = await scheduler.events(QUEUE, count=4 * JOBS)
    requeued = Counter(e["job"] for e in events if (e["from"], e["to"]) == ("running", "queued"))
    assert set(requeued) == set(job_ids) and set(requeued.values()) == {1}
