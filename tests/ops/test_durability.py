"""The service warns at start when Redis may lose jobs: eviction on, or no persistence at all."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leasehold.scheduler.service import warn_about_eviction, warn_about_persistence
from tests.redis_server import RedisServer


async def _warnings(server: RedisServer) -> list[str]:
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        with capture_logs() as logs:
            await warn_about_eviction(client)
            await warn_about_persistence(client)
    finally:
        await client.aclose()
    return [str(entry["event"]) for entry in logs]


async def test_no_aof_and_no_rdb_is_a_warning(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # the test server runs with --save '' --appendonly no
    try:
        assert await _warnings(server) == ["redis_persistence_disabled"]
    finally:
        server.stop()


async def test_eviction_is_a_warning_and_rdb_only_a_hint(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--maxmemory-policy", "allkeys-lru", "--save", "3600 1")
    try:
        assert await _warnings(server) == ["redis_eviction_enabled", "redis_aof_disabled"]
    finally:
        server.stop()


async def test_aof_with_noeviction_is_quiet(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "everysec")
    try:
        assert await _warnings(server) == []
    finally:
        server.stop()
