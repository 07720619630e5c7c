"""Redis memory a finished job costs until retention ends, and the keys it leaves after it."""

from __future__ import annotations

import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec
from leasehold.scheduler.reaper import Reaper
from tests.integration.test_queues import T0

JOBS = 200
TARGET_BYTES = 1536  # 1.5 KiB


async def _usage(redis: aioredis.Redis, key: str) -> int:
    return int(await redis.memory_usage(key, samples=0) or 0)


async def _keys(redis: aioredis.Redis, namespace: str) -> set[str]:
    return {key async for key in redis.scan_iter(match=f"*{namespace}*", count=1000)}


async def finished_jobs(scheduler: Scheduler, count: int) -> list[str]:
    """Submits, claims and completes ``count`` plain jobs (a command, no logs)."""
    ids = []
    for n in range(count):
        job = await scheduler.submit(JobSpec(command=f"make test-{n}"), now_ms=T0)
        ids.append(job.job.id)
    for _ in range(count):
        claim = (await scheduler.claim("w", [], now_ms=T0 + 1)).claims[0]
        await scheduler.complete(claim.lease.lease_id, "w", {"ok": 1}, now_ms=T0 + 2)
    return ids


async def memory_per_job(redis: aioredis.Redis, scheduler: Scheduler, ids: list[str]) -> float:
    """Every key a job owns, plus its share of the queue's index, done set and events stream."""
    q = scheduler.queue_keys("default")
    own = 0
    for job_id in ids:
        own += await _usage(redis, q.job(job_id))
        own += await _usage(redis, q.log(job_id))
    shared = sum([await _usage(redis, key) for key in (q.index, q.done, q.events)])
    return (own + shared) / len(ids)


async def test_a_finished_job_without_logs_costs_under_the_target(
    redis: aioredis.Redis, scheduler: Scheduler,
) -> None:
    ids = await finished_jobs(scheduler, JOBS)
    q = scheduler.queue_keys("default")
    assert await redis.exists(*(q.log(job_id) for job_id in ids)) == 0  # never logged
    assert await redis.object("encoding", q.job(ids[0])) == "listpack"  # the compact form
    per_job = await memory_per_job(redis, scheduler, ids)
    print(f"redis bytes per finished job without logs: {per_job:.0f}")
    assert per_job <= TARGET_BYTES


async def test_retention_leaves_only_the_queue_keys_behind(
    redis: aioredis.Redis, scheduler: Scheduler, settings: Settings,
) -> None:
    await finished_jobs(scheduler, 1)  # the queue's own keys exist from here on
    reaper = Reaper(scheduler)
    await reaper.run_once(now_ms=T0 + 2 + 8 * 86_400_000)
    baseline = await _keys(redis, settings.namespace)
    ids = await finished_jobs(scheduler, 20)
    assert len(await _keys(redis, settings.namespace)) > len(baseline)
    report = await reaper.sweep(now_ms=T0 + 2 + 8 * 86_400_000)  # visits every queue
    assert report.purged == len(ids)
    assert await _keys(redis, settings.namespace) == baseline
