"""What ``/metrics`` reads from Redis at scrape time: queue counters and gauges, workers, reaper,
Redis memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import QueueStats, WorkerStatus
from leasehold.scheduler.workers import WorkerRegistry

QUEUE_READS_AT_ONCE = 4  # queues read concurrently per scrape; each read is a few round trips
MEMORY_CACHE_SECS = 5.0  # INFO memory is cheap but not free; scrapers of many replicas share it


@dataclass(frozen=True)
class ReaperState:
    """What the reapers recorded (``Keyspace.reaper``); ``last_pass_ms`` None = never ran."""

    last_pass_ms: int | None
    pass_duration_ms: float | None
    passes: int

    def age_secs(self, now: float | None = None) -> float | None:
        """Seconds since any reaper last finished a pass, by this host's clock."""
        if self.last_pass_ms is None:
            return None
        now = time.time() if now is None else now
        return round(max(0.0, now - self.last_pass_ms / 1000), 3)


@dataclass(frozen=True)
class RedisMemory:
    """INFO memory: bytes in use and the maxmemory limit (0 = no limit)."""

    used_bytes: int
    max_bytes: int


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape reports from Redis, read before rendering (collectors are sync)."""

    queues: list[QueueStats]
    workers: dict[WorkerStatus, int]
    reaper: ReaperState
    memory: RedisMemory | None = None


async def reaper_state(scheduler: Scheduler) -> ReaperState:
    raw = cast(dict[str, str], await scheduler.redis.hgetall(scheduler.keys.reaper))
    last = raw.get("last_pass_ms") or raw.get("last_run_ms")  # the latter: older reapers
    duration = raw.get("pass_duration_ms")
    return ReaperState(last_pass_ms=int(last) if last else None,
                       pass_duration_ms=float(duration) if duration else None,
                       passes=int(raw.get("passes", "0")))


_memory_cache: dict[int, tuple[float, RedisMemory]] = {}


async def redis_memory(redis: Redis) -> RedisMemory | None:
    """INFO memory, cached for ``MEMORY_CACHE_SECS`` per client (None where INFO is refused, as
    on some managed Redis). On Cluster: the primary nearest its limit (it refuses writes first)."""
    now = time.monotonic()
    cached = _memory_cache.get(id(redis))
    if cached is not None and now - cached[0] < MEMORY_CACHE_SECS:
        return cached[1]
    try:
        if isinstance(redis, RedisCluster):
            replies = cast(dict[str, dict[str, Any]], await redis.info(
                "memory", target_nodes=RedisCluster.PRIMARIES))
            infos = (list(replies.values()) if replies and "used_memory" not in replies
                     else [replies])
        else:
            infos = [await redis.info("memory")]
    except ResponseError:  # a connection error is not this: it fails the scrape's redis_up
        return None
    readings = [RedisMemory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
                for info in infos]
    memory = max(readings, key=lambda m: (m.used_bytes / m.max_bytes if m.max_bytes else 0,
                                          m.used_bytes))
    _memory_cache[id(redis)] = (now, memory)
    return memory


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
    return Snapshot(queues=list(queues), workers=counts, reaper=await reaper_state(scheduler),
                    memory=await redis_memory(scheduler.redis))
