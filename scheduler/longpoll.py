"""Long-poll claims: one Redis subscription per process wakes claimers when jobs get ready, and
ends a worker's waiting claims when it is drained or revoked, or the process shuts down."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from leasehold.scheduler.core import ClaimBatch, Scheduler

log = structlog.get_logger("leasehold.longpoll")

MAX_WAIT_SECS = 30.0
STOP_MEMORY_SECS = 60.0  # a stop message outlives any claim that began before it


@dataclass(eq=False)
class _Waiter:
    queues: list[str]
    group: str
    worker: str
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop()
                                         .create_future())


class ReadyWaiters:
    """Idle claimers wait on futures, not on Redis; scripts PUBLISH "<queue prefix>ready" <n>.

    Waiters with the same queues and labels are interchangeable, so a message that n jobs got
    ready wakes the n oldest waiters of each such group: a group that cannot take the jobs
    goes back to sleep after one cheap claim, a group that can takes them.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._groups: dict[str, dict[str, deque[_Waiter]]] = {}
        self._by_worker: dict[str, set[_Waiter]] = {}
        self._stopped: dict[str, float] = {}  # "<worker>@<registered_ms>" -> when it was stopped
        self._closing = False
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        ns = scheduler.keys.namespace
        self._pattern = f"{{{ns}:*}}:ready"
        self._head, self._tail = f"{{{ns}:", "}:ready"
        self._control = f"{{{ns}}}:claims"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="leasehold-ready-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            if not done:  # a pubsub read can swallow the cancel; closing its socket ends it
                await self._close_pubsub()
                task.cancel()
                await asyncio.wait({task}, timeout=2)
        await self._close_pubsub()

    async def _close_pubsub(self) -> None:
        """Gives the subscription's connection back: a lost one left checked out would drain
        the pool, one per Redis restart or failover, until every request waits forever."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    @property
    def waiting(self) -> int:
        return sum(len(dq) for groups in self._groups.values() for dq in groups.values())

    async def _listen(self) -> None:
        while True:
            try:
                self._pubsub = self.scheduler.redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.psubscribe(self._pattern)
                await self._pubsub.subscribe(self._control)
                self.wake_all()  # anything published while we were not listening
                async for message in self._pubsub.listen():
                    if message["channel"] == self._control:
                        self._on_control(str(message["data"]))
                    else:
                        self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("ready_listener_lost", error=str(exc))
                await self._close_pubsub()
                await asyncio.sleep(0.5)

    def _on_message(self, channel: str, data: str) -> None:
        if channel.startswith(self._head) and channel.endswith(self._tail):
            queue = channel[len(self._head):-len(self._tail)]
            self.wake(queue, int(data) if str(data).isdigit() else 1)

    # -- ending waits: drain, revoke, shutdown -----------------------------------------------

    async def stop_worker(self, worker_id: str, registered_at_ms: int) -> None:
        """Ends the worker's waiting claims in every API process (this one at once, the others
        by a message) and keeps them from waiting again until ``resume_worker``."""
        self._on_control(f"stop {worker_id}@{registered_at_ms}")
        await self.scheduler.redis.publish(self._control, f"stop {worker_id}@{registered_at_ms}")

    async def resume_worker(self, worker_id: str, registered_at_ms: int) -> None:
        self._on_control(f"resume {worker_id}@{registered_at_ms}")
        await self.scheduler.redis.publish(self._control,
                                           f"resume {worker_id}@{registered_at_ms}")

    def _on_control(self, data: str) -> None:
        verb, _, who = data.partition(" ")
        now = asyncio.get_running_loop().time()
        for stale in [k for k, at in self._stopped.items() if now - at > STOP_MEMORY_SECS]:
            del self._stopped[stale]
        if verb == "resume":
            self._stopped.pop(who, None)
        elif verb == "stop":
            self._stopped[who] = now
            for waiter in list(self._by_worker.get(who, ())):
                if not waiter.future.done():
                    waiter.future.set_result(None)

    def close(self) -> int:
        """Shutdown: every waiting claim returns empty now, and new ones do not wait; returns
        how many were waiting."""
        self._closing = True
        waiting = self.waiting
        for groups in self._groups.values():
            for dq in groups.values():
                for waiter in dq:
                    if not waiter.future.done():
                        waiter.future.set_result(None)
        return waiting

    def _ends_wait(self, worker: str) -> bool:
        return self._closing or worker in self._stopped

    def wake(self, queue: str, count: int) -> None:
        for dq in self._groups.get(queue, {}).values():
            woken = 0
            while dq and woken < count:
                waiter = dq.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(None)
                    woken += 1

    def wake_all(self) -> None:
        for queue in list(self._groups):
            self.wake(queue, 1 << 30)

    def _add(self, queues: list[str], group: str, worker: str) -> _Waiter:
        waiter = _Waiter(queues=queues, group=group, worker=worker)
        for queue in queues:
            self._groups.setdefault(queue, {}).setdefault(group, deque()).append(waiter)
        self._by_worker.setdefault(worker, set()).add(waiter)
        return waiter

    def _remove(self, waiter: _Waiter) -> None:
        mine = self._by_worker.get(waiter.worker)
        if mine is not None:
            mine.discard(waiter)
            if not mine:
                del self._by_worker[waiter.worker]
        for queue in waiter.queues:
            groups = self._groups.get(queue)
            if groups is None:
                continue
            dq = groups.get(waiter.group)
            if dq is not None:
                with contextlib.suppress(ValueError):
                    dq.remove(waiter)
                if not dq:
                    del groups[waiter.group]
            if not groups:
                del self._groups[queue]

    async def claim(
        self,
        worker_id: str,
        labels: list[str],
        queues: list[str],
        lease_ttl_secs: float | None,
        max_jobs: int,
        wait_secs: float,
        registered_at_ms: int = 0,
    ) -> ClaimBatch:
        """Claims now; if nothing is there, waits up to ``wait_secs`` for a job to get ready.

        A drain or revoke of the worker (``registered_at_ms`` tells its registration from a
        later one under the same id) or the process's shutdown ends the wait with no claims.
        """
        loop = asyncio.get_running_loop()
        hold = self.scheduler.settings.max_hold_secs or MAX_WAIT_SECS
        deadline = loop.time() + min(wait_secs, MAX_WAIT_SECS, hold)
        group = f"{','.join(queues)}|{','.join(sorted(set(labels)))}"
        worker = f"{worker_id}@{registered_at_ms}"
        while True:
            if self._ends_wait(worker):
                return ClaimBatch()
            waiter = self._add(queues, group, worker)  # before the claim: no wake-up is missed
            try:
                batch = await self.scheduler.claim(worker_id, labels, queues, lease_ttl_secs,
                                                   max_jobs)
                remaining = deadline - loop.time()
                if batch.claims or remaining <= 0 or self._ends_wait(worker):
                    return batch
                if batch.next_due_ms is not None and batch.now_ms is not None:
                    remaining = min(remaining, max(0.0, (batch.next_due_ms - batch.now_ms) / 1000))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter.future), timeout=remaining)
            finally:
                self._remove(waiter)
