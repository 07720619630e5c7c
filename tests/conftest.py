"""Fixtures: one private redis-server per session, and a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``LEASEHOLD_TEST_REDIS_URL`` when set, else a redis-server this session spawns."""
    configured = os.environ.get("LEASEHOLD_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, namespace=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def scheduler(redis: aioredis.Redis, settings: Settings) -> Scheduler:
    sched = Scheduler(redis, settings)
    await sched.start()
    return sched
