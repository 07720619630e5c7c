"""``LogStore``: a job's log chunks in its Redis Stream — fenced append, paged read, live tail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import cast

from pydantic import BaseModel

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import queue_of_job
from leasehold.scheduler.models import Job, JobStatus
from leasehold.scheduler.scripts import raise_for
from leasehold.scheduler.streams import ENTRY_ID, Entry, StreamHub, Subscription, entry_key

MAX_READ = 1000
# live chunks remembered for the other viewers of the same job, oldest dropped first
LIVE_MEMO, LIVE_MEMO_BYTES = 4096, 8 << 20
RECHECK_SECS = 60.0  # a live tail looks at its job this often even if no sign of its end came
TERMINAL = frozenset(status.value for status in JobStatus if status.terminal)


class LogChunk(BaseModel):
    """One stored chunk; ``id`` is its stream entry id (resume point for readers)."""

    id: str
    job_id: str
    workflow_id: str | None = None
    sequence: int | None = None
    stream: str
    data: str
    timestamp_ms: int
    attempt: int = 0


@dataclass
class Appended:
    appended: int
    dropped: int
    last_id: str | None


@dataclass
class NewChunk:
    data: str
    stream: str = "stdout"
    sequence: int | None = None
    timestamp_ms: int | None = None


def check_entry_id(value: str, name: str = "after") -> str:
    if not ENTRY_ID.match(value) or max(entry_key(value)) >= 1 << 64:  # Redis ids are 64-bit
        raise errors.InvalidArgument(f"{name} must be a stream entry id like 1700000000000-0")
    return value


class LogStore:
    def __init__(self, scheduler: Scheduler, hub: StreamHub) -> None:
        self.scheduler = scheduler
        self.hub = hub
        self.maxlen = scheduler.settings.log_maxlen
        self.max_bytes = scheduler.settings.log_max_bytes
        self._live: dict[tuple[str, str], LogChunk] = {}
        self._live_bytes = 0

    def key(self, job_id: str) -> str:
        queue = queue_of_job(job_id)
        if queue is None:
            raise errors.JobNotFound("no such job", job_id=job_id)
        return self.scheduler.queue_keys(queue).log(job_id)

    async def append(self, lease_id: str, worker_id: str, chunks: list[NewChunk],
                     now_ms: int | None = None) -> Appended:
        """Appends in order; chunks whose sequence this lease already stored are dropped."""
        job_id, q = self.scheduler.lease_target(lease_id)
        flat: list[str | int] = []
        for chunk in chunks:
            flat += ["" if chunk.sequence is None else chunk.sequence, chunk.stream, chunk.data,
                     "" if chunk.timestamp_ms is None else chunk.timestamp_ms]
        reply = await self.scheduler.scripts.append_logs(
            q, job_id, lease_id, worker_id, self.maxlen, len(chunks), flat, now_ms,
            self.max_bytes)
        raise_for(reply, lease_id=lease_id)
        appended = Appended(appended=int(reply[1]), dropped=int(reply[2]),
                            last_id=reply[3] or None)
        if reply[0] == "LOG_TOO_LARGE":
            raise LogTooLarge(f"the job's log reached its cap of {self.max_bytes} bytes; "
                              "it was truncated", job_id=job_id, stored=appended.appended)
        return appended

    async def read(self, job_id: str, after: str | None = None,
                   limit: int = MAX_READ) -> tuple[list[LogChunk], str | None]:
        """Chunks after ``after`` in order, and the job's final status once the log has ended."""
        job, entries = await self._page(job_id, after, limit)
        chunks = [c for e in entries if (c := to_chunk(job.job_id, job.workflow_id, e))]
        return chunks, _ended(job, entries, limit)

    async def _page(self, job_id: str, after: str | None, limit: int) -> tuple[Job, list[Entry]]:
        """The job (read first: once terminal, it takes no more chunks) and stream entries."""
        job = await self.scheduler.get(job_id)  # 404 for unknown jobs
        start = "-" if after is None else f"({check_entry_id(after)}"
        entries = cast(list[Entry], await self.scheduler.redis.xrange(
            self.key(job_id), start, "+", count=limit))
        return job, entries

    async def tail(self, job_id: str, after: str | None,
                   on_overflow: Callable[[], None] | None = None,
                   ) -> AsyncGenerator[LogChunk | str, None]:
        """History, then live chunks, with no gap and no duplicate; a final status string ends it.

        The end shows as the stream's end marker or, for a job that never logged (no stream),
        as the job's terminal transition on its queue's events stream; either sends the tail
        back to Redis for what is left. Raises ``SubscriberTooSlow`` when the viewer fell
        behind the live stream; ``on_overflow`` is called the moment that happens (a viewer
        stuck writing to its client may never come back for the next chunk, so the caller
        should cut the client off there).
        """
        key = self.key(job_id)
        events = self.scheduler.queue_keys(queue_of_job(job_id) or "").events
        # before reading history, so nothing falls between
        sub = await self.hub.subscribe([key], on_overflow, job=(events, job_id))
        try:
            last = after
            while True:
                while True:  # what Redis holds now, page by page
                    job, entries = await self._page(job_id, last, MAX_READ)
                    for entry in entries:
                        last = entry[0]
                        if (chunk := to_chunk(job.job_id, job.workflow_id, entry)) is not None:
                            yield chunk
                    if len(entries) < MAX_READ:
                        break
                if (ended := _ended(job, entries, MAX_READ)) is not None:
                    yield ended
                    return
                async for chunk in self._follow(sub, key, job, last):
                    last = chunk.id
                    yield chunk
        finally:
            await self.hub.unsubscribe(sub)

    async def _follow(self, sub: Subscription, key: str, job: Job,
                    last: str | None) -> AsyncGenerator[LogChunk, None]:
        """Live chunks after ``last`` until a sign the job may have ended (or a quiet spell)."""
        while True:
            try:
                stream, entry = await asyncio.wait_for(sub.queue.get(), RECHECK_SECS)
            except TimeoutError:
                return  # a look at the job now and then, should a sign ever be lost
            if sub.overflowed.is_set() and sub.queue.empty():
                raise SubscriberTooSlow(job.id)
            if stream != key:  # the job's own transition on the events stream
                if entry[1].get("to") in TERMINAL:
                    return
                continue
            if last is not None and entry_key(entry[0]) <= entry_key(last):
                continue
            live = self._live_chunk(key, job.job_id, job.workflow_id, entry)
            if live is None:  # the end marker
                return
            last = entry[0]
            yield live

    def _live_chunk(self, key: str, job_name: str, workflow_id: str | None,
                    entry: Entry) -> LogChunk | None:
        """One LogChunk per live entry, shared by every viewer of the job (a thousand viewers
        would otherwise build a thousand equal ones); None for the end marker."""
        memo = (key, entry[0])
        chunk = self._live.get(memo)
        if chunk is None:
            chunk = to_chunk(job_name, workflow_id, entry)
            if chunk is None:
                return None
            self._live[memo] = chunk
            self._live_bytes += len(chunk.data)
            while len(self._live) > LIVE_MEMO or self._live_bytes > LIVE_MEMO_BYTES:
                self._live_bytes -= len(self._live.pop(next(iter(self._live))).data)  # oldest
        return chunk


class SubscriberTooSlow(errors.SchedulerError):
    code = "too_slow"


class LogTooLarge(errors.SchedulerError):
    """A push past the job's log cap in bytes; the chunks before the cap were stored."""

    code = "log_too_large"


def to_chunk(job_name: str, workflow_id: str | None, entry: Entry) -> LogChunk | None:
    """A chunk from a stream entry, or None for the end marker a terminal transition writes."""
    entry_id, fields = entry
    if "end" in fields:
        return None
    seq = fields.get("seq", "")
    return LogChunk(id=entry_id, job_id=job_name, workflow_id=workflow_id,
                    sequence=int(seq) if seq else None, stream=fields.get("stream", "stdout"),
                    data=fields.get("data", ""), timestamp_ms=int(fields.get("ts", "0")),
                    attempt=int(fields.get("attempt", "0")))


def _ended(job: Job, entries: list[Entry], limit: int) -> str | None:
    """A terminal job takes no more chunks (one that never logged has no stream at all), so a
    page short of ``limit`` read after its status is the end of its log."""
    return job.status.value if job.status.terminal and len(entries) < limit else None
