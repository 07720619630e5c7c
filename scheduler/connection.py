"""Creates the redis-py asyncio client from settings (single node or Cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from leasehold.scheduler.config import Settings
from leasehold.scheduler.embedded import FAKE_URL

_FAKE_SERVERS: list[Any] = []
POOL_TIMEOUT_SECS = 10.0  # how long a request waits for a free connection, as on one node
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("holding_slot", default=False)


class BoundedCluster(RedisCluster):
    """A Cluster client whose commands wait for a connection instead of failing.

    redis-py's Cluster pool raises MaxConnectionsError when a node's ``max_connections`` are
    all busy. Each command or pipeline uses at most one connection per node, so letting at most
    ``max_connections - 1`` of them run at once keeps every node's pool from running dry (one
    connection per node stays for the long-lived pub/sub of wake-ups); the others wait, up to
    ``POOL_TIMEOUT_SECS``, like the blocking pool of a single node.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        per_node = int(kwargs.get("max_connections", 100))
        self._slots = asyncio.Semaphore(max(1, per_node - 1))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if _HOLDING.get():  # a retry inside a command or pipeline that holds one already
            yield
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), POOL_TIMEOUT_SECS)
        except TimeoutError:
            raise RedisConnectionError("no free Redis connection within "
                                       f"{POOL_TIMEOUT_SECS:g} s") from None
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # raises as redis-py does
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        client = self.cluster_client
        assert isinstance(client, BoundedCluster)
        async with client.slot():
            return await super().execute(raise_on_error, allow_redirections)


def _fake_server() -> Any:
    """One in-process fake server shared by every client of this process."""
    if not _FAKE_SERVERS:
        import fakeredis

        _FAKE_SERVERS.append(fakeredis.FakeServer())
    return _FAKE_SERVERS[0]


def connect(url: str, cluster: bool = False, max_connections: int = 10) -> Redis:
    """A client with decoded replies; Cluster clients are typed as Redis (same command surface)."""
    if url == FAKE_URL:
        import fakeredis  # only the embedded fallback needs it

        fake: Redis = fakeredis.FakeAsyncRedis(server=_fake_server(), decode_responses=True)
        return fake
    if cluster:
        client: Redis = BoundedCluster.from_url(  # type: ignore[assignment]
            url, decode_responses=True, max_connections=max_connections)
        return client
    # A blocking pool: a burst of requests waits for a connection instead of opening hundreds.
    pool = BlockingConnectionPool.from_url(url, decode_responses=True, timeout=10,
                                           max_connections=max_connections,
                                           health_check_interval=30)
    # from_pool: the client owns its pool, so aclose() closes the pool's connections too.
    return Redis.from_pool(pool)


def connect_settings(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise ValueError("LEASEHOLD_REDIS_URL is not set")
    return connect(settings.redis_url, settings.redis_cluster, settings.redis_max_connections)
