"""``StreamHub``: one multiplexed Redis reader per process for every watched stream, fanned out
to bounded per-viewer queues."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

log = structlog.get_logger("leasehold.streams")

ENTRY_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
BLOCK_MS = 4_000  # under redis-py's 5 s socket timeout, else every idle read times out
READ_COUNT = 500
POLL_SECS = 0.05  # Cluster: keys of different slots cannot share one XREAD, so they are polled
WAKE_TRIES, WAKE_WAIT_SECS = 200, 0.005
STOP_TRIES, STOP_WAIT_SECS = 25, 0.2  # a reader that ignores cancels still ends after BLOCK_MS
Entry = tuple[str, dict[str, str]]
Delivery = tuple[str, Entry]  # (stream key, entry)


def entry_key(entry_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    """What one viewer receives; ``overflowed`` is set when it fell too far behind."""

    keys: tuple[str, ...]
    queue: asyncio.Queue[Delivery]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    # Called once, from the reader, when the queue overflows: the viewer may be stuck writing
    # to a stalled client and never look at its queue again, so this is what cuts it off.
    on_overflow: Callable[[], None] | None = None
    # (events stream key, job id): that job's entries of the events stream are delivered too
    job: tuple[str, str] | None = None


class StreamHub:
    """Viewers subscribe to stream keys; one reader connection per process reads them all.

    On a single node the reader issues one blocking XREAD over every watched key and re-issues
    it (CLIENT UNBLOCK) when a new key is watched. With ``poll`` (Cluster, where keys of
    different slots cannot share an XREAD), keys of one slot share an XREAD and the slots are
    polled in turn over the same client. A viewer whose queue is full is
    dropped (``overflowed``) instead of growing memory; it resumes from its last event id.
    """

    def __init__(self, redis: Redis, connect: Callable[[], Redis], poll: bool = False,
                 maxsize: int = 1000) -> None:
        self._redis = redis  # the shared pool: start ids and wake-ups
        self._connect = connect
        self._poll_slots = poll
        self.maxsize = maxsize
        self._subs: dict[str, set[Subscription]] = {}
        self._jobs: dict[str, dict[str, set[Subscription]]] = {}  # events key -> job -> viewers
        self._uses: dict[str, int] = {}
        self._last: dict[str, str] = {}  # every watched key -> last entry id read
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._generation = 0  # bumped when a key is added
        self._built = 0  # the generation of the keys the reader's current XREAD names
        self._client: Redis | None = None
        self._client_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def viewers(self) -> int:
        return len({sub for subs in self._subs.values() for sub in subs}
                   | {sub for jobs in self._jobs.values() for s in jobs.values() for sub in s})

    @property
    def streams(self) -> int:
        """Stream keys the reader watches now."""
        return len(self._last)

    @property
    def connections(self) -> int:
        """Reader connections of this process: one once anyone watched, whatever the load."""
        return 0 if self._client is None else 1

    async def subscribe(self, keys: Iterable[str], on_overflow: Callable[[], None] | None = None,
                        job: tuple[str, str] | None = None) -> Subscription:
        """Entries appended after this call returns are delivered (and maybe a few before)."""
        sub = Subscription(keys=tuple(keys), queue=asyncio.Queue(self.maxsize),
                           on_overflow=on_overflow, job=job)
        async with self._lock:
            added = False
            for key in sub.keys:
                self._subs.setdefault(key, set()).add(sub)
                added |= await self._use(key)
            if job is not None:
                self._jobs.setdefault(job[0], {}).setdefault(job[1], set()).add(sub)
                added |= await self._use(job[0])
            if self._task is None:
                self._client = self._connect()
                self._task = asyncio.create_task(self._read(), name="stream hub reader")
        if added:
            self._generation += 1
            self._changed.set()
            try:
                await self._wake()
            except BaseException:  # a viewer cancelled here must not stay subscribed
                await asyncio.shield(self.unsubscribe(sub))
                raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            for key in sub.keys:
                subs = self._subs.get(key)
                if subs is not None and sub in subs:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[key]
                    self._release(key)
            if sub.job is not None:
                jobs = self._jobs.get(sub.job[0], {})
                watchers = jobs.get(sub.job[1])
                if watchers is not None and sub in watchers:
                    watchers.discard(sub)
                    if not watchers:
                        del jobs[sub.job[1]]
                    if not jobs:
                        self._jobs.pop(sub.job[0], None)
                    self._release(sub.job[0])

    async def close(self) -> None:
        self._closed = True
        self._changed.set()
        task, client = self._task, self._client
        self._task = self._client = None
        if task is not None:
            # redis-py sends a command under asyncio.wait_for, which on Python 3.11 swallows a
            # cancel that lands as the send completes; so cancel until it ends (``_closed``
            # ends it too, after its current blocking read).
            for _ in range(STOP_TRIES):
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_SECS)
                if done:
                    if not task.cancelled():
                        task.exception()  # retrieved, so asyncio does not log it
                    break
            else:
                log.warning("stream_reader_not_stopping")
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def _use(self, key: str) -> bool:
        """Counts one more use of ``key``; True when the reader has to start reading it."""
        self._uses[key] = self._uses.get(key, 0) + 1
        if key in self._last:
            return False
        newest = cast(list[Entry], await self._redis.xrevrange(key, "+", "-", count=1))
        self._last[key] = newest[0][0] if newest else "0-0"
        return True

    def _release(self, key: str) -> None:
        self._uses[key] -= 1
        if self._uses[key] <= 0:
            del self._uses[key]
            self._last.pop(key, None)

    async def _wake(self) -> None:
        """Makes the reader re-issue its XREAD with the keys watched now: unblocks it until its
        read names them (an unblock that lands before the XREAD reaches Redis is retried)."""
        if self._poll_slots:
            return  # polled: the next round reads the new keys
        target = self._generation
        for _ in range(WAKE_TRIES):
            client_id = self._client_id
            if self._built >= target or client_id is None or self._closed:
                return
            try:
                if await self._redis.client_unblock(client_id):
                    return
            except RedisError as exc:  # CLIENT denied: new keys wait for the current read
                log.warning("stream_reader_unblock_failed", error=str(exc))
                return
            await asyncio.sleep(WAKE_WAIT_SECS)

    async def _read(self) -> None:
        while not self._closed:
            if not self._last:
                self._changed.clear()
                await self._changed.wait()
                continue
            client = self._client
            if client is None:
                return
            try:
                if self._client_id is None and not self._poll_slots:
                    self._client_id = int(await client.client_id())
                self._built = self._generation
                streams = dict(self._last)
                if not streams:
                    continue
                if self._poll_slots:
                    reply = await self._poll(client, streams)
                else:
                    reply = cast(list[tuple[str, list[Entry]]], await client.xread(
                        streams, block=BLOCK_MS, count=READ_COUNT))  # type: ignore[arg-type]
            except (RedisError, OSError) as exc:
                log.warning("stream_reader_error", error=str(exc))
                self._client_id = None  # a new connection has a new id
                await asyncio.sleep(0.5)
                continue
            for key, entries in reply or []:
                for entry in entries:
                    if key in self._last and entry_key(entry[0]) > entry_key(self._last[key]):
                        self._last[key] = entry[0]
                    self._dispatch(key, entry)

    async def _poll(self, client: Redis, streams: dict[str, str]) -> list[tuple[str, list[Entry]]]:
        """One non-blocking XREAD per slot; waits a little (or for a new key) when all were idle."""
        slots: dict[int, dict[str, str]] = {}
        for key, last in streams.items():
            slots.setdefault(key_slot(key.encode()), {})[key] = last
        reply: list[tuple[str, list[Entry]]] = []
        for group in slots.values():
            part = await client.xread(group, count=READ_COUNT)  # type: ignore[arg-type]
            reply += cast(list[tuple[str, list[Entry]]], part or [])
        if not reply:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_SECS)
        return reply

    def _dispatch(self, key: str, entry: Entry) -> None:
        subs: Iterable[Subscription] = self._subs.get(key, ())
        jobs = self._jobs.get(key)
        if jobs is not None:
            watchers = jobs.get(entry[1].get("job", ""))
            if watchers:
                subs = [*subs, *watchers]
        item = (key, entry)  # one tuple shared by every viewer
        for sub in list(subs):
            if sub.overflowed.is_set():
                continue
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.overflowed.set()
                if sub.on_overflow is not None:
                    try:
                        sub.on_overflow()
                    except Exception as exc:  # one viewer's callback must not stop the others
                        log.warning("stream_overflow_callback_failed", key=key, error=str(exc))
