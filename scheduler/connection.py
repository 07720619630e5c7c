"""Creates the redis-py asyncio client from settings (single node or Cluster)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from leasehold.scheduler.config import Settings
from leasehold.scheduler.embedded import FAKE_URL

_FAKE_SERVERS: list[Any] = []


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
        client: Redis = RedisCluster.from_url(  # type: ignore[assignment]
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
