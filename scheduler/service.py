"""``Services``: what one API process needs over one Redis client, opened and closed together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from leasehold.scheduler.auth import TokenStore
from leasehold.scheduler.authcache import AuthCache
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect, connect_settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.embedded import FAKE_URL
from leasehold.scheduler.logs import LogStore
from leasehold.scheduler.longpoll import ReadyWaiters
from leasehold.scheduler.streams import StreamHub
from leasehold.scheduler.workers import WorkerRegistry
from leasehold.scheduler.workflows import Workflows

log = structlog.get_logger("leasehold")


@dataclass
class Services:
    redis: Redis
    scheduler: Scheduler
    workers: WorkerRegistry
    tokens: TokenStore
    waiters: ReadyWaiters
    hub: StreamHub
    logs: LogStore
    workflows: Workflows

    async def close(self) -> None:
        await self.workers.close()  # the signs of life not yet written
        await self.waiters.stop()
        if self.tokens.cache is not None:
            await self.tokens.cache.stop()
        await self.hub.close()
        await self.redis.aclose()

    async def ready(self) -> bool:
        """Redis answers and every script is loaded; a Redis that restarted or failed over has
        lost its script cache, so the scripts are loaded again here (else a probe that takes
        the process out of service would keep it out for good)."""
        await self.redis.ping()
        shas = [script.sha for script in self.scheduler.scripts.all()]
        exists = await self.redis.script_exists(*shas)
        if not all(exists):
            await self.scheduler.scripts.load()
        return True


async def open_services(settings: Settings) -> Services:
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    await warn_about_eviction(redis)
    await warn_about_persistence(redis)
    auth_cache = AuthCache(redis, scheduler.keys.namespace, settings.auth_cache_secs)
    await auth_cache.start()
    tokens = TokenStore(redis, scheduler.scripts, scheduler.keys, _split(settings.admin_token),
                        _split(settings.metrics_token), auth_cache)
    waiters = ReadyWaiters(scheduler)
    await waiters.start()
    url = settings.redis_url or ""
    # one reader connection per process (per node on Cluster) for every SSE viewer
    hub = StreamHub(redis, lambda: connect(url, settings.redis_cluster, max_connections=1),
                    poll=settings.redis_cluster or url == FAKE_URL)
    workflows = Workflows(scheduler)
    services = Services(redis, scheduler, WorkerRegistry(scheduler, tokens), tokens, waiters,
                        hub, LogStore(scheduler, hub), workflows)
    if settings.workflows_dir:
        try:
            await workflows.load_dir(Path(settings.workflows_dir))
        except BaseException:  # a bad definition file stops start-up: leave nothing running
            await services.close()
            raise
    return services


def _split(tokens: str | None) -> list[str]:
    """Comma-separated tokens of a setting."""
    return [t.strip() for t in (tokens or "").split(",") if t.strip()]


async def _config(redis: Redis, *names: str) -> list[dict[str, str]]:
    """CONFIG GET of every primary (one on a single node); [] when CONFIG is disabled."""
    try:
        if isinstance(redis, RedisCluster):
            replies = await redis.config_get(*names, target_nodes=RedisCluster.PRIMARIES)
            return list(cast(dict[str, dict[str, str]], replies).values())
        return [cast(dict[str, str], await redis.config_get(*names))]
    except RedisError:  # managed Redis often disables CONFIG; then we cannot tell
        return []


async def warn_about_eviction(redis: Redis) -> None:
    """Evicting keys breaks every guarantee; the service needs ``noeviction``."""
    for config in await _config(redis, "maxmemory-policy"):
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            log.warning("redis_eviction_enabled", policy=policy,
                        hint="set maxmemory-policy noeviction; evicted keys lose jobs")
            return


async def warn_about_persistence(redis: Redis) -> None:
    """Without AOF or RDB a Redis restart forgets every job; run it with AOF everysec."""
    for config in await _config(redis, "appendonly", "save"):
        aof = config.get("appendonly", "yes") == "yes"
        rdb = config.get("save", "x").strip() != ""
        if not aof and not rdb:
            log.warning("redis_persistence_disabled", hint="set appendonly yes and appendfsync "
                        "everysec; a restart of this Redis loses every job")
            return
        if not aof:
            log.info("redis_aof_disabled", hint="only RDB snapshots: a crash loses the writes "
                     "since the last save; appendonly yes bounds the loss to about 1 s")
            return
