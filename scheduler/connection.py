"""Creates the redis-py asyncio client from settings (single node or Cluster)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from scheduler.config import Settings


def connect(url: str, cluster: bool = False) -> Redis:
    """A client with decoded replies; Cluster clients are typed as Redis (same command surface)."""
    if cluster:
        client: Redis = RedisCluster.from_url(url, decode_responses=True)  # type: ignore[assignment]
        return client
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


def connect_settings(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise ValueError("LEASEHOLD_REDIS_URL is not set")
    return connect(settings.redis_url, settings.redis_cluster)
