"""``Reaper``: expires leases, promotes due delayed jobs and purges old results, queue by queue.

A pass visits only the queues with work due: each ``reap`` reply says when its queue is next
due, and scripts that put a new earliest deadline at the head of ``leases``, ``delayed`` or
``done`` PUBLISH it on ``<queue prefix>due``. A sweep of every indexed queue at start, after a
lost subscription and every ``SWEEP_SECS`` covers lost messages and forgets idle queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from typing import cast

import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import ReapReport
from leasehold.scheduler.schedules import Schedules
from leasehold.scheduler.workers import WorkerRegistry

log = structlog.get_logger("leasehold.reaper")

MAX_PASSES = 100  # per queue and run, so one huge backlog cannot starve the other queues
SWEEP_SECS = 60.0  # every indexed queue is reaped this often, whatever the messages said
SWEEP_AT_ONCE = 8  # queues reaped concurrently by a sweep


class Reaper:
    """Safe to run in any number of processes: each expired lease is handled by one script call,
    and a queue leaves the index only when one script found it empty and another found it idle."""

    def __init__(self, scheduler: Scheduler, interval_secs: float | None = None) -> None:
        self.scheduler = scheduler
        self.interval_secs = interval_secs or scheduler.settings.reap_interval_secs
        self.batch = scheduler.settings.reap_batch
        self.idle_ms = int(scheduler.settings.queue_idle_secs * 1000)
        self.workers = WorkerRegistry(scheduler)
        self.schedules = Schedules(scheduler)
        self.visited = 0  # queues the last pass (or sweep) reaped
        self.last_pass_at: float | None = None  # time.monotonic() when a pass last finished
        self._due: dict[str, int] = {}  # queue -> earliest time (Redis ms) it may have work
        self._heap: list[tuple[int, str]] = []
        self._swept = False
        self._sweep_now = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._pubsub: PubSub | None = None
        ns = scheduler.keys.namespace
        self._pattern = f"{{{ns}:*}}:due"
        self._head, self._tail = f"{{{ns}:", "}:due"

    # -- the schedule ----------------------------------------------------------------------------

    def schedule(self, queue: str, due_ms: int) -> None:
        """Visit ``queue`` at ``due_ms`` or earlier (an early visit only costs one script call)."""
        current = self._due.get(queue)
        if current is None or due_ms < current:
            self._due[queue] = due_ms
            heapq.heappush(self._heap, (due_ms, queue))

    def _take_due(self, now_ms: int) -> list[str]:
        taken: list[str] = []
        while self._heap and self._heap[0][0] <= now_ms:
            due, queue = heapq.heappop(self._heap)
            if self._due.get(queue) == due:  # else a stale entry: the queue was rescheduled
                del self._due[queue]
                taken.append(queue)
        return taken

    # -- passes ----------------------------------------------------------------------------------

    async def run_once(self, now_ms: int | None = None) -> ReapReport:
        """One pass: the first one sweeps every indexed queue, later ones visit due queues."""
        started = time.monotonic()
        if not self._swept:
            report = await self.sweep(now_ms)
        else:
            report = await self.reap_due(now_ms)
        report.workers_offline = await self.workers.sweep(now_ms)
        await self.schedules.run_due(now_ms)
        await self._record_pass(time.monotonic() - started)
        self.last_pass_at = time.monotonic()
        return report

    def last_pass_age_secs(self) -> float | None:
        """Seconds since this process's reaper last finished a pass (None: not yet)."""
        if self.last_pass_at is None:
            return None
        return time.monotonic() - self.last_pass_at

    async def reap_due(self, now_ms: int | None = None) -> ReapReport:
        """Reaps the queues whose next deadline has come: O(queues with due work)."""
        now = now_ms if now_ms is not None else await self.scheduler.now_ms()
        report = ReapReport()
        queues = self._take_due(now)
        self.visited = len(queues)
        for n, queue in enumerate(queues):
            try:
                await self._reap(queue, now_ms, report)
            except RedisError:
                for left in queues[n:]:
                    self.schedule(left, now)  # still due: the next pass tries again
                raise
        return report

    async def sweep(self, now_ms: int | None = None) -> ReapReport:
        """Reaps every indexed queue and forgets the idle empty ones: O(queues indexed)."""
        await self._merge_legacy_index()
        now = now_ms if now_ms is not None else await self.scheduler.now_ms()
        cutoff = now - self.idle_ms
        report = ReapReport()
        gate = asyncio.Semaphore(SWEEP_AT_ONCE)

        async def visit(queue: str, active_ms: int) -> None:
            async with gate:
                due = await self._reap(queue, now_ms, report)
                if due is None and active_ms <= cutoff:
                    await self._forget(queue, cutoff, now_ms)

        activity = await self.scheduler.queue_activity()
        await asyncio.gather(*(visit(queue, active) for queue, active in activity))
        self.visited = len(activity)
        self._swept = True
        return report

    async def _reap(self, queue: str, now_ms: int | None, report: ReapReport) -> int | None:
        """Reaps one queue; schedules and returns its next deadline (None: nothing pending)."""
        q = self.scheduler.queue_keys(queue)
        due: int | None = None
        for _ in range(MAX_PASSES):
            reply = await self.scheduler.scripts.reap(q, self.batch, now_ms)
            _, expired, promoted, purged, more, next_due = reply
            report.add(ReapReport(expired=expired, promoted=promoted, purged=purged))
            due = int(next_due) if next_due != "" else None
            if not more:
                break
        if due is not None:
            self.schedule(queue, due)
        return due

    async def _forget(self, queue: str, cutoff_ms: int, now_ms: int | None) -> None:
        """Deletes an idle queue's leftover keys (one queue-slot script that refuses if a job
        arrived), then drops it from the index unless it was touched after ``cutoff_ms``."""
        scripts = self.scheduler.scripts
        reply = await scripts.forget_queue(self.scheduler.queue_keys(queue), self.idle_ms, now_ms)
        if reply[0] != "OK":
            return
        removed = (await scripts.unindex_queue(self.scheduler.keys, queue, cutoff_ms))[1]
        if removed:
            self._due.pop(queue, None)
            log.info("queue_forgotten", queue=queue)

    async def _merge_legacy_index(self) -> None:
        """Moves queue names from the untagged SET older versions kept into the index."""
        redis, keys = self.scheduler.redis, self.scheduler.keys
        names = cast(set[str], await redis.smembers(keys.legacy_queues))
        if names:
            now = int(time.time() * 1000)
            await redis.zadd(keys.queues, dict.fromkeys(names, now), nx=True)
            await redis.srem(keys.legacy_queues, *names)

    async def _record_pass(self, seconds: float) -> None:
        """Records the pass's end and duration in Redis, so /metrics and /readyz of any process
        show whether a reaper is alive."""
        key = self.scheduler.keys.reaper
        async with self.scheduler.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, items=["last_pass_ms", str(int(time.time() * 1000)),
                                  "pass_duration_ms", str(round(seconds * 1000, 3))])
            pipe.hincrby(key, "passes", 1)
            await pipe.execute()

    # -- running ---------------------------------------------------------------------------------

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Runs a pass every interval (with 10% jitter) until ``stop`` is set: the first one, once
        subscribed to deadline messages, sweeps every queue; later sweeps run beside the passes."""
        log.info("reaper_started", interval_secs=self.interval_secs)
        listener = asyncio.create_task(self._listen(), name="leasehold-reaper-due")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=5)
        sweeper = asyncio.create_task(self._sweep_forever(stop), name="leasehold-reaper-sweep")
        try:
            while not stop.is_set():
                try:
                    report = await self.run_once()
                    if report.expired or report.purged:
                        log.info("reaper_pass_finished", **report.model_dump())
                except (RedisError, OSError) as exc:
                    log.warning("reaper_pass_failed", error=str(exc))
                delay = self.interval_secs * random.uniform(0.9, 1.1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            for task in (listener, sweeper):
                task.cancel()
            await asyncio.wait({listener, sweeper}, timeout=2)
            await self._close_pubsub()
        log.info("reaper_stopped")

    async def _sweep_forever(self, stop: asyncio.Event) -> None:
        """Sweeps every ``SWEEP_SECS``, and at once after a lost subscription."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), timeout=SWEEP_SECS)
            self._sweep_now.clear()
            try:
                report = await self.sweep()
                if report.expired or report.purged:
                    log.info("reaper_sweep_finished", queues=self.visited, **report.model_dump())
            except (RedisError, OSError) as exc:
                log.warning("reaper_sweep_failed", error=str(exc))
                self._sweep_now.set()
                await asyncio.sleep(1)

    async def _listen(self) -> None:
        """Follows deadline messages; after a lost subscription a sweep covers the gap."""
        first = True
        while True:
            try:
                self._pubsub = self.scheduler.redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.psubscribe(self._pattern)
                if not first:
                    self._sweep_now.set()
                first = False
                self._subscribed.set()
                async for message in self._pubsub.listen():
                    self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("reaper_due_listener_lost", error=str(exc))
                await self._close_pubsub()
                await asyncio.sleep(0.5)

    def _on_message(self, channel: str, data: str) -> None:
        if channel.startswith(self._head) and channel.endswith(self._tail):
            with contextlib.suppress(ValueError):
                self.schedule(channel[len(self._head):-len(self._tail)], int(data))

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
