"""``Services``: what one API process needs over one Redis client, opened and closed together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scheduler.auth import TokenStore
from scheduler.config import Settings
from scheduler.connection import connect, connect_settings
from scheduler.core import Scheduler
from scheduler.logs import LogStore
from scheduler.longpoll import ReadyWaiters
from scheduler.streams import StreamHub
from scheduler.workers import WorkerRegistry
from scheduler.workflows import Workflows

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
        await self.waiters.stop()
        await self.hub.close()
        await self.redis.aclose()

    async def ready(self) -> bool:
        """Redis answers and every script is loaded."""
        await self.redis.ping()
        shas = [script.sha for script in self.scheduler.scripts.all()]
        exists = await self.redis.script_exists(*shas)
        return all(exists)


async def open_services(settings: Settings) -> Services:
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    await warn_about_eviction(redis)
    admin_tokens = [t.strip() for t in (settings.admin_token or "").split(",") if t.strip()]
    tokens = TokenStore(redis, scheduler.scripts, scheduler.keys, admin_tokens)
    waiters = ReadyWaiters(scheduler)
    await waiters.start()
    url = settings.redis_url or ""
    hub = StreamHub(lambda: connect(url, settings.redis_cluster, max_connections=2))
    workflows = Workflows(scheduler)
    if settings.workflows_dir:
        await workflows.load_dir(Path(settings.workflows_dir))
    return Services(redis, scheduler, WorkerRegistry(scheduler), tokens, waiters, hub,
                    LogStore(scheduler, hub), workflows)


async def warn_about_eviction(redis: Redis) -> None:
    """Evicting keys breaks every guarantee; SPEC §5 asks for ``noeviction``."""
    try:
        config = await redis.config_get("maxmemory-policy")
    except RedisError:  # CONFIG may be disabled (managed Redis); then we cannot tell
        return
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        log.warning("redis_eviction_enabled", policy=policy,
                    hint="set maxmemory-policy noeviction; evicted keys lose jobs")
