"""Verified tokens remembered for a few seconds per process, forgotten in every process at once
when a worker or token changes (one pub/sub channel of the namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from leasehold.scheduler.auth import Principal, auth_channel

log = structlog.get_logger("leasehold.auth")
MAX_ENTRIES = 50_000


class AuthCache:
    """token digest -> the principal Redis said it is, for ``ttl_secs`` at most.

    Only used while this process is subscribed to the namespace's ``auth`` channel: a lost
    subscription forgets everything and every token is checked in Redis until it is back.
    ``generation`` counts what this process has been told to forget; a principal read from
    Redis is kept only if nothing was forgotten while it was read, and a claim that saw the
    same generation before and after knows its worker was neither drained, revoked nor
    replaced meanwhile.
    """

    def __init__(self, redis: Redis, namespace: str, ttl_secs: float) -> None:
        self.redis = redis
        self.ttl_secs = ttl_secs
        self.channel = auth_channel(namespace)
        self.generation = 0
        self.live = False
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lookups ------------------------------------------------------------------------------

    def get(self, token_digest: str) -> Principal | None:
        if not self.live:
            return None
        entry = self._entries.get(token_digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[token_digest]
            return None
        return entry[1]

    def put(self, token_digest: str, principal: Principal, generation: int) -> None:
        """Remembers a principal read from Redis when the read began at ``generation``."""
        if not self.live or self.ttl_secs <= 0 or generation != self.generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_digest] = (time.monotonic() + self.ttl_secs, principal)

    def unchanged_since(self, generation: int) -> bool:
        """Nothing was forgotten since ``generation`` and the channel was heard throughout."""
        return self.live and generation == self.generation

    # -- forgetting ---------------------------------------------------------------------------

    def forget(self, message: str) -> None:
        """``worker <id>``, ``token <digest>`` or ``all``."""
        self.generation += 1
        kind, _, value = message.partition(" ")
        if kind == "token":
            self._entries.pop(value, None)
        elif kind == "worker":
            for key in [k for k, (_, p) in self._entries.items() if p.worker_id == value]:
                del self._entries[key]
        else:
            self._entries.clear()

    async def announce(self, message: str) -> None:
        """Forgets here at once and tells every other process."""
        self.forget(message)
        await self.redis.publish(self.channel, message)

    # -- the subscription ---------------------------------------------------------------------

    async def start(self) -> None:
        if self.ttl_secs > 0:
            self._task = asyncio.create_task(self._listen(), name="leasehold-auth-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._lost()
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            if not done:  # a pubsub read can swallow the cancel; closing its socket ends it
                await self._close()
                await asyncio.wait({task}, timeout=2)
        await self._close()

    def _lost(self) -> None:
        self.live = False
        self.forget("all")

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self) -> None:
        while True:
            try:
                self._pubsub = self.redis.pubsub()
                await self._pubsub.subscribe(self.channel)
                async for message in self._pubsub.listen():
                    if message["type"] == "subscribe":
                        # Heard from now on; forget anything said while we were not listening.
                        self.forget("all")
                        self.live = True
                    elif message["type"] == "message":
                        self.forget(str(message["data"]))
            except (RedisError, OSError) as exc:
                log.warning("auth_listener_lost", error=str(exc))
            finally:
                self._lost()
            await self._close()
            await asyncio.sleep(0.5)
