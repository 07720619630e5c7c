"""Creates the redis-py asyncio client from settings (single node, Sentinel or Cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from leasehold.scheduler.config import Settings, sentinel_parts
from leasehold.scheduler.embedded import FAKE_URL

_FAKE_SERVERS: list[Any] = []
POOL_TIMEOUT_SECS = 10.0  # how long a request waits for a free connection, as on one node
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("holding_slot", default=False)


LONG_LIVED = 2  # pub/sub connections an API process keeps open: wake-ups, auth invalidations


class BoundedCluster(RedisCluster):
    """A Cluster client whose commands wait for a connection instead of failing.

    redis-py's Cluster pool raises MaxConnectionsError when a node's ``max_connections`` are
    all busy. Each command or pipeline uses at most one connection per node, so letting at most
    ``max_connections - LONG_LIVED`` of them run at once keeps every node's pool from running dry
    (the long-lived subscriptions of an API process — wake-ups and auth invalidations — may all
    sit on one node); the others wait, up to ``POOL_TIMEOUT_SECS``, like the blocking pool of a
    single node.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        per_node = int(kwargs.get("max_connections", 100))
        self._slots = asyncio.Semaphore(max(1, per_node - LONG_LIVED))

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
    if url.startswith("redis+sentinel://"):
        return _connect_sentinel(url, max_connections)
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


def _connect_sentinel(url: str, max_connections: int) -> Redis:
    """The current master of the Sentinel group; the client asks the sentinels again after a
    failover. The URL's user and password are the master's; ``?sentinel_password=`` is the
    sentinels' own (when they have one)."""
    sentinels, master, db = sentinel_parts(url)
    parts = urlsplit(url)
    sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[-1]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs={"password": sentinel_password, "socket_timeout": 5},
        decode_responses=True,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None)
    client: Redis = sentinel.master_for(master, db=db, max_connections=max_connections,
                                        health_check_interval=30)
    return client


class RedisUnavailable(Exception):
    """Redis did not answer within the start-up wait."""


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    query = re.sub(r"(password=)[^&]*", r"\1***", parts.query)
    if parts.password is None:
        return parts._replace(query=query).geturl()
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + host, query=query).geturl()


async def wait_for_redis(settings: Settings, process: str) -> None:
    """PINGs Redis with backoff for ``redis_wait_secs``, one log line per failed try; raises
    RedisUnavailable with the last error when time runs out."""
    log = structlog.get_logger("leasehold.connection")
    deadline = time.monotonic() + settings.redis_wait_secs
    delay, attempt = 0.25, 0
    while True:
        attempt += 1
        redis = connect_settings(settings)
        try:
            # an unroutable host never refuses: give each try its own limit
            async with asyncio.timeout(max(1.0, min(5.0, deadline - time.monotonic()))):
                await redis.ping()
            return
        except (RedisError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await redis.aclose()
        left = deadline - time.monotonic()
        if left <= 0:
            raise RedisUnavailable(error)
        wait = min(delay, left)
        log.warning("redis_unavailable", process=process, attempt=attempt, error=error,
                    retry_in_secs=round(wait, 2), url=redacted(settings.redis_url or ""))
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
