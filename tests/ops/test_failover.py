"""Losing the long-poll subscription (a Redis restart, failover or network cut) again and again
must neither leak pooled connections nor leave idle claimers unwoken."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.longpoll import ReadyWaiters
from leasehold.scheduler.models import JobSpec
from tests.redis_server import RedisServer

POOL = 3


async def _subscribed(admin: redis.Redis) -> None:
    for _ in range(250):  # 5 s; the listener subscribes again within a second
        if admin.client_list(_type="pubsub"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the listener did not subscribe again")


async def test_lost_subscriptions_give_their_connections_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    admin = redis.Redis.from_url(server.url)
    client = connect(server.url, max_connections=POOL)
    scheduler = Scheduler(client, Settings(redis_url=server.url, namespace="fo"))
    await scheduler.start()
    waiters = ReadyWaiters(scheduler)
    await waiters.start()
    try:
        for _ in range(POOL + 2):  # more losses than the pool has connections
            await _subscribed(admin)
            admin.client_kill_filter(_type="pubsub")
        await _subscribed(admin)
        await asyncio.wait_for(client.ping(), 2)  # the pool still has a free connection

        started = time.monotonic()
        claiming = asyncio.create_task(waiters.claim("w1", [], ["q"], None, 1, 10))
        await asyncio.sleep(0.2)
        job = (await scheduler.submit(JobSpec(command="x", queue="q"))).job
        batch = await asyncio.wait_for(claiming, 5)
        assert [claim.job.id for claim in batch.claims] == [job.id]
        assert time.monotonic() - started < 3  # woken by PUBLISH, not by the 10 s wait
    finally:
        await waiters.stop()
        await client.aclose()
        admin.close()
        server.stop()
