"""The read side of the scheduler: jobs, job lists, queue statistics, events and Redis time."""

from __future__ import annotations

from typing import Any, cast

import orjson
from redis.asyncio import Redis

from leasehold.scheduler import codec, errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.keys import Keyspace, QueueKeys, queue_of_job
from leasehold.scheduler.models import Job, JobStatus, QueueStats, RateLimit, typed_event

MAX_LIST = 1000
MAX_LIST_SCAN = 10_000
NO_JOB = "no such job"


class SchedulerReads:
    """Reads that change nothing; plain Redis commands, no script."""

    def __init__(self, redis: Redis, settings: Settings | None = None) -> None:
        self.redis = redis
        self.settings = settings or Settings()
        self.keys = Keyspace(self.settings.namespace)

    def queue_keys(self, queue: str) -> QueueKeys:
        return self.keys.queue(queue)

    @staticmethod
    def _queue_or_404(job_id: str) -> str:
        queue = queue_of_job(job_id)
        if queue is None:
            raise errors.JobNotFound(NO_JOB, job_id=job_id)
        return queue

    async def get(self, job_id: str) -> Job:
        queue = queue_of_job(job_id)
        if queue is None:
            raise errors.JobNotFound(NO_JOB, job_id=job_id)
        q = self.queue_keys(queue)
        record = await self._hgetall(q.job(job_id))
        if not record:
            raise errors.JobNotFound(NO_JOB, job_id=job_id)
        await self._with_upstream(q, [record])
        return codec.job_from_record(record)

    async def _with_upstream(self, q: QueueKeys, records: list[dict[str, str]]) -> None:
        """Adds ``upstream_outputs`` to workflow jobs' records: their direct dependencies'
        outputs, by reference (as lib/upstream.lua does for claims; the text is never decoded)."""
        wanted = [(r, cast(list[str], orjson.loads(r["deps"]))) for r in records
                  if r.get("deps") not in (None, "", "[]")]
        if not wanted:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, deps in wanted:
                for dep in deps:
                    pipe.hmget(q.job(dep), "job_id", "outputs")
            found = iter(cast(list[list[str | None]], await pipe.execute()))
        for record, deps in wanted:
            parts = []
            for _ in deps:
                name, outputs = next(found)
                if name is not None and outputs is not None:
                    parts.append(orjson.dumps(name).decode() + ":" + outputs)
            record["upstream_outputs"] = "{" + ",".join(parts) + "}"

    async def _hgetall(self, key: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(key))

    async def list_jobs(
        self,
        queue: str = "default",
        status: JobStatus | None = None,
        workflow_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Job], str | None]:
        """Jobs of a queue in enqueue order (or newest first); ``next_cursor`` continues after
        the last one seen.

        Filters scan at most ``MAX_LIST_SCAN`` entries per call, so a page may be short (or
        empty) with a cursor to go on: the cost of one call is bounded, not the result.
        """
        if not 1 <= limit <= MAX_LIST:
            raise errors.InvalidArgument(f"limit must be 1..{MAX_LIST}")
        if cursor is not None and not cursor.isdigit():
            raise errors.InvalidArgument("cursor is not one this API returned")
        q = self.queue_keys(queue)
        jobs: list[Job] = []
        after, scanned = cursor or "", 0
        while len(jobs) < limit and scanned < MAX_LIST_SCAN:
            if newest_first:
                page = cast(list[tuple[str, float]], await self.redis.zrevrangebyscore(
                    q.index, f"({after}" if after else "+inf", "-inf", start=0, num=limit,
                    withscores=True))
            else:
                page = cast(list[tuple[str, float]], await self.redis.zrangebyscore(
                    q.index, f"({after}" if after else "-inf", "+inf", start=0, num=limit,
                    withscores=True))
            if not page:
                return jobs, None
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in page:
                    pipe.hgetall(q.job(job_id))
                records = cast(list[dict[str, str]], await pipe.execute())
            await self._with_upstream(q, records)
            for (_, seq), record in zip(page, records, strict=True):
                scanned += 1
                after = str(int(seq))
                if not record:
                    continue
                job = codec.job_from_record(record)
                if (status is None or job.status == status) and (
                        workflow_id is None or job.workflow_id == workflow_id):
                    jobs.append(job)
                    if len(jobs) == limit:
                        break
        return jobs, after

    async def queues(self) -> list[str]:
        """The queues of the queue index: those with jobs, settings or recent activity."""
        return sorted(name for name, _ in await self.queue_activity())

    async def queue_activity(self) -> list[tuple[str, int]]:
        """(queue, last activity ms) of every indexed queue."""
        pairs = cast(list[tuple[str, float]],
                     await self.redis.zrange(self.keys.queues, 0, -1, withscores=True))
        return [(name, int(score)) for name, score in pairs]

    async def counters(self, queue: str) -> dict[str, int]:
        """Lifecycle counters the scripts keep: submitted, claimed, finished:<status>, ..."""
        raw = await self._hgetall(self.queue_keys(queue).stats)
        return {name: int(value) for name, value in raw.items()}

    async def queue_stats(self, queue: str, now_ms: int | None = None) -> QueueStats:
        q = self.queue_keys(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(q.meta)
            pipe.hkeys(q.labelsets)
            pipe.zcard(q.delayed)
            pipe.zcard(q.leases)
            pipe.hgetall(q.stats)
            meta, lsids, scheduled, running, stats = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for lsid in lsids:
                pipe.zcard(q.ready(lsid))
                pipe.zrange(q.ready(lsid), 0, 0)
            replies = await pipe.execute()
        heads = [member[0].split("|", 1)[1] for member in replies[1::2] if member]
        oldest = await self._oldest_enqueued(q, heads)
        # TIME is not allowed in a Cluster pipeline; ask only when there is an age to compute.
        now = now_ms if now_ms is not None or oldest is None else await self.now_ms()
        counters = {name: int(value) for name, value in stats.items()}
        rate = int(meta.get("rate_limit", "0"))
        claim_rate = RateLimit(limit=rate, per_secs=codec.secs(int(meta["rate_per_ms"]))) \
            if rate else None
        submit = int(meta.get("submit_limit", "0"))
        submit_rate = RateLimit(limit=submit, per_secs=codec.secs(int(meta["submit_per_ms"]))) \
            if submit else None
        max_running = int(meta.get("max_running", "0"))
        return QueueStats(
            queue=queue,
            ready=sum(replies[0::2]),
            scheduled=scheduled,
            waiting_deps=counters.get("count:waiting", 0),
            running=running,
            failure=counters.get("count:failure", 0),
            success=counters.get("count:success", 0),
            cancelled=counters.get("count:cancelled", 0),
            paused=meta.get("paused") == "1",
            max_running=max_running or None,
            rate_limit=claim_rate,
            claim_rate=claim_rate,
            submit_rate=submit_rate,
            oldest_ready_age_secs=codec.secs(max(0, now - oldest))
            if oldest is not None and now is not None else None,
            counters={k: v for k, v in counters.items() if not k.startswith("count:")},
        )

    async def now_ms(self) -> int:
        """Redis time, the one clock of every script."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def _oldest_enqueued(self, q: QueueKeys, job_ids: list[str]) -> int | None:
        if not job_ids:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(q.job(job_id), "enqueued_at_ms")
            stamps = [int(s) for s in await pipe.execute() if s]
        return min(stamps) if stamps else None

    async def events(self, queue: str, after: str = "-", count: int = 1000
                     ) -> list[dict[str, Any]]:
        """State transitions of a queue from its audit stream, oldest first (``attempt`` and
        ``t`` as integers, like the job object)."""
        start = after if after == "-" else f"({after}"
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrange(self.queue_keys(queue).events, start, "+", count=count),
        )
        return [{"id": entry_id, **typed_event(fields)} for entry_id, fields in entries]

    async def raw_record(self, job_id: str) -> dict[str, str]:
        """The stored hash of a job, for tests and diagnostics."""
        queue = self._queue_or_404(job_id)
        return await self._hgetall(self.queue_keys(queue).job(job_id))
