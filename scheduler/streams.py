"""``StreamHub``: one Redis reader per watched stream per process, fanned out to bounded queues."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("leasehold.streams")

ENTRY_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
BLOCK_MS = 4_000  # under redis-py's 5 s socket timeout, else every idle read times out
STOP_TRIES, STOP_WAIT_SECS = 25, 0.2  # a reader that ignores cancels still ends after BLOCK_MS
Entry = tuple[str, dict[str, str]]


def entry_key(entry_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    """What one viewer receives; ``overflowed`` is set when it fell too far behind."""

    key: str
    queue: asyncio.Queue[Entry]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    # Called once, from the reader, when the queue overflows: the viewer may be stuck writing
    # to a stalled client and never look at its queue again, so this is what cuts it off.
    on_overflow: Callable[[], None] | None = None


class _Reader:
    def __init__(self, key: str, client: Redis, start_id: str) -> None:
        self.key = key
        self.client = client
        self.last_id = start_id
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.stopped = False


class StreamHub:
    """Viewers subscribe to a stream key; one blocking XREAD per key feeds them all.

    Each reader has its own connection (blocking reads must not hold the shared pool). A
    viewer whose queue is full is dropped (``overflowed``) instead of growing memory; it
    resumes from its last event id.
    """

    def __init__(self, connect: Callable[[], Redis], maxsize: int = 1000) -> None:
        self._connect = connect
        self.maxsize = maxsize
        self._readers: dict[str, _Reader] = {}
        self._lock = asyncio.Lock()

    @property
    def readers(self) -> int:
        return len(self._readers)

    async def subscribe(self, key: str,
                        on_overflow: Callable[[], None] | None = None) -> Subscription:
        """Entries appended after this call returns are delivered (and maybe a few before)."""
        sub = Subscription(key=key, queue=asyncio.Queue(self.maxsize), on_overflow=on_overflow)
        async with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                client = self._connect()
                newest = cast(list[Entry], await client.xrevrange(key, "+", "-", count=1))
                reader = _Reader(key, client, newest[0][0] if newest else "0-0")
                self._readers[key] = reader
                reader.task = asyncio.create_task(self._read(reader), name=f"xread {key}")
            reader.subscribers.add(sub)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            reader = self._readers.get(sub.key)
            if reader is None:
                return
            reader.subscribers.discard(sub)
            if reader.subscribers:
                return
            del self._readers[sub.key]
        await self._stop(reader)

    async def close(self) -> None:
        async with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            await self._stop(reader)

    @staticmethod
    async def _stop(reader: _Reader) -> None:
        reader.stopped = True
        task = reader.task
        if task is not None:
            # redis-py sends a command under asyncio.wait_for, which on Python 3.11 swallows a
            # cancel that lands as the send completes: the reader would go on reading forever
            # and this wait would never end. So cancel until it ends (``stopped`` ends it too,
            # after its current blocking read).
            for _ in range(STOP_TRIES):
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_SECS)
                if done:
                    if not task.cancelled():
                        task.exception()  # retrieved, so asyncio does not log it
                    break
            else:
                log.warning("stream_reader_not_stopping", key=reader.key)
        with contextlib.suppress(RedisError, OSError):
            await reader.client.aclose()

    async def _read(self, reader: _Reader) -> None:
        while not reader.stopped:
            try:
                reply = cast(list[tuple[str, list[Entry]]], await reader.client.xread(
                    {reader.key: reader.last_id}, block=BLOCK_MS, count=500))
            except (RedisError, OSError) as exc:
                log.warning("stream_reader_error", key=reader.key, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in reply or []:
                for entry in entries:
                    reader.last_id = entry[0]
                    self._dispatch(reader, entry)

    @staticmethod
    def _dispatch(reader: _Reader, entry: Entry) -> None:
        for sub in list(reader.subscribers):
            if sub.overflowed.is_set():
                continue
            try:
                sub.queue.put_nowait(entry)
            except asyncio.QueueFull:
                sub.overflowed.set()
                if sub.on_overflow is not None:
                    try:
                        sub.on_overflow()
                    except Exception as exc:  # one viewer's callback must not stop the others
                        log.warning("stream_overflow_callback_failed", key=reader.key,
                                    error=str(exc))
