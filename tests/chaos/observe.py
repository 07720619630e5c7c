"""Reads what the server recorded: job records and the per-queue ``events`` streams, tailed
during a run (so a Redis that loses its data cannot take the history with it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from leasehold.scheduler.keys import Keyspace
from tests.chaos.ledger import TERMINAL, JobRecord, Ledger, Report, Transition, check

Entries = list[tuple[str, dict[str, str]]]


def _key_of(metadata: str | None) -> str | None:
    if not metadata:
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        value = orjson.loads(metadata)
        if isinstance(value, dict) and isinstance(value.get("ledger"), str):
            return str(value["ledger"])
    return None


async def job_records(redis: aioredis.Redis, namespace: str,
                      queues: list[str]) -> list[JobRecord]:
    """Every job of the queues (by their ``index``), as the checker needs them."""
    keys = Keyspace(namespace)
    found: list[JobRecord] = []
    for queue in queues:
        q = keys.queue(queue)
        ids = cast(list[str], await redis.zrange(q.index, 0, -1))
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(q.job(job_id), "metadata", "status", "attempt", "lease_id",
                           "lease_expires_at_ms")
            rows = cast(list[list[str | None]], await pipe.execute())
        for job_id, (metadata, status, attempt, lease, expires) in zip(ids, rows, strict=True):
            if status is None:
                continue  # purged between the two reads
            found.append(JobRecord(job_id, _key_of(metadata), status, int(attempt or 0),
                                   lease or "", int(expires or 0)))
    return found


async def redis_now_ms(redis: aioredis.Redis) -> int:
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


class EventTail:
    """Polls the queues' ``events`` streams into memory until stopped; tolerates Redis outages."""

    def __init__(self, url: str, namespace: str, queues: list[str],
                 interval: float = 0.1) -> None:
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        self.keys = {queue: Keyspace(namespace).queue(queue).events for queue in queues}
        self.interval = interval
        self.entries: dict[str, Transition] = {}
        self._last = dict.fromkeys(queues, "-")
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def __aenter__(self) -> EventTail:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopped = True
        task = self._task
        # redis-py on Python 3.11 can swallow a cancel that lands as a command is sent: cancel
        # until the task ends (the flag ends it after its current poll in any case)
        for _ in range(50):
            if task is None or task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it
        await self.redis.aclose()

    async def poll(self) -> None:
        for queue, key in self.keys.items():
            while True:
                last = self._last[queue]
                start = last if last == "-" else f"({last}"
                entries = cast(Entries, await self.redis.xrange(key, start, "+", count=5000))
                for entry_id, fields in entries:
                    self.entries[f"{queue}/{entry_id}"] = Transition.from_entry(entry_id, fields)
                if entries:
                    self._last[queue] = entries[-1][0]
                if len(entries) < 5000:
                    break

    async def _run(self) -> None:
        while not self._stopped:
            with contextlib.suppress(RedisError, OSError):
                await self.poll()
            await asyncio.sleep(self.interval)

    def transitions(self) -> list[Transition]:
        return list(self.entries.values())


async def settle(redis: aioredis.Redis, namespace: str, queues: list[str], ledger: Ledger,
                 within: float) -> None:
    """Waits until every stored job of the queues is terminal and every acknowledged job has
    been seen terminal or missing (the checker judges what is left after ``within``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError, OSError):
            records = await job_records(redis, namespace, queues)
            if records and all(r.status in TERMINAL for r in records):
                stored = {r.job_id for r in records}
                acked = set(ledger.acknowledged().values())
                if acked <= stored or ledger.lossy_keys:
                    return
        await asyncio.sleep(0.1)


async def verdict(redis: aioredis.Redis, namespace: str, queues: list[str], ledger: Ledger,
                  tail: EventTail, reap_interval_ms: int, *,
                  complete_history: bool = True) -> Report:
    """Settles, then checks the run: one last read of the streams and the records."""
    await tail.poll()
    records = await job_records(redis, namespace, queues)
    report = check(ledger, records, tail.transitions(), await redis_now_ms(redis),
                   reap_interval_ms, complete_history=complete_history)
    print(f"ledger: {len(ledger.submits)} submits, {len(records)} jobs, "
          f"{len(tail.entries)} transitions; {report.summary()}")
    return report
