"""``Reaper``: expires leases, promotes due delayed jobs and purges old results, queue by queue."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import structlog
from redis.exceptions import RedisError

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import ReapReport
from leasehold.scheduler.workers import WorkerRegistry

log = structlog.get_logger("leasehold.reaper")

MAX_PASSES = 100  # per queue and run, so one huge backlog cannot starve the other queues


class Reaper:
    """Safe to run in any number of processes: each expired lease is handled by one script call."""

    def __init__(self, scheduler: Scheduler, interval_secs: float | None = None) -> None:
        self.scheduler = scheduler
        self.interval_secs = interval_secs or scheduler.settings.reap_interval_secs
        self.batch = scheduler.settings.reap_batch
        self.workers = WorkerRegistry(scheduler)

    async def run_once(self, now_ms: int | None = None) -> ReapReport:
        report = ReapReport()
        for queue in await self.scheduler.queues():
            q = self.scheduler.queue_keys(queue)
            for _ in range(MAX_PASSES):
                reply = await self.scheduler.scripts.reap(q, self.batch, now_ms)
                _, expired, promoted, purged, more = reply
                report.add(ReapReport(expired=expired, promoted=promoted, purged=purged))
                if not more:
                    break
        report.workers_offline = await self.workers.sweep(now_ms)
        await self._record_pass()
        return report

    async def _record_pass(self) -> None:
        """Counts finished passes in Redis, so /metrics of any process shows a reaper is alive."""
        key = self.scheduler.keys.reaper
        async with self.scheduler.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "last_run_ms", str(int(time.time() * 1000)))
            pipe.hincrby(key, "passes", 1)
            await pipe.execute()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Runs a pass every interval (with 10% jitter) until ``stop`` is set."""
        log.info("reaper_started", interval_secs=self.interval_secs)
        while not stop.is_set():
            try:
                report = await self.run_once()
                if report.expired or report.purged:
                    log.info("reaper_pass_finished", **report.model_dump())
            except RedisError as exc:
                log.warning("reaper_pass_failed", error=str(exc))
            delay = self.interval_secs * random.uniform(0.9, 1.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        log.info("reaper_stopped")
