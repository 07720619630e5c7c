"""What ``/metrics`` reads from Redis at scrape time: queue counters and gauges, workers, reaper."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import QueueStats, WorkerStatus
from leasehold.scheduler.workers import WorkerRegistry

QUEUE_READS_AT_ONCE = 4  # queues read concurrently per scrape; each read is a few round trips


@dataclass(frozen=True)
class ReaperState:
    """What the reapers recorded (``Keyspace.reaper``); ``last_run_ms`` None = never ran."""

    last_run_ms: int | None
    passes: int


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape reports from Redis, read before rendering (collectors are sync)."""

    queues: list[QueueStats]
    workers: dict[WorkerStatus, int]
    reaper: ReaperState


async def snapshot(scheduler: Scheduler, workers: WorkerRegistry) -> Snapshot:
    """The lifecycle counters are the scripts' own, so every process reports the same totals."""
    gate = asyncio.Semaphore(QUEUE_READS_AT_ONCE)

    async def stats(queue: str) -> QueueStats:
        async with gate:
            return await scheduler.queue_stats(queue)

    queues = await asyncio.gather(*(stats(name) for name in await scheduler.queues()))
    counts = dict.fromkeys(WorkerStatus, 0)
    for worker in await workers.list():
        counts[worker.status] += 1
        if worker.status in (WorkerStatus.IDLE, WorkerStatus.BUSY):
            counts[WorkerStatus.ONLINE] += 1  # online = idle + busy, as the list filter
    raw = cast(dict[str, str], await scheduler.redis.hgetall(scheduler.keys.reaper))
    last = raw.get("last_run_ms")
    reaper = ReaperState(last_run_ms=int(last) if last else None,
                         passes=int(raw.get("passes", "0")))
    return Snapshot(queues=list(queues), workers=counts, reaper=reaper)
