"""SSE viewers of many jobs and queues share a bounded number of Redis connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from leasehold.api.app import create_app
from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.config import Settings
from tests.api.test_log_routes import Event, events_of, wait_for
from tests.redis_server import RedisServer

JOBS, LOG_VIEWERS, EVENT_VIEWERS, CHUNKS = 20, 50, 5, 5
TIMEOUT = 30.0
# besides the shared pool: the reader every viewer shares and the ready-wakeup listener
FIXED = 2


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestServer, aioredis.Redis, Settings]]:
    """The API on a private Redis, so every client but the probe is the API process's."""
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, auth=False, namespace="conns")
    api = TestServer(create_app(settings))
    await api.start_server()
    probe = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield api, probe, settings
    finally:
        await probe.aclose()
        await api.close()
        server.stop()


async def api_connections(probe: aioredis.Redis) -> int:
    own = int(await probe.client_id())
    return sum(int(c["id"]) != own for c in await probe.client_list())


async def _events(http: aiohttp.ClientSession, path: str, opened: asyncio.Event,
                  until: str) -> list[Event]:
    """Events of ``path`` up to (and with) the first of type ``until``."""
    got: list[Event] = []
    async with http.get(path) as resp:
        assert resp.status == 200
        opened.set()
        async for event in events_of(resp):
            got.append(event)
            if event.event == until:
                break
    return got


async def test_many_viewers_of_many_jobs_share_a_few_connections(
    served: tuple[TestServer, aioredis.Redis, Settings],
) -> None:
    api, probe, settings = served
    hub = api.app[SERVICES].hub
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(base_url=str(api.make_url("/")), timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as http:

        async def call(path: str, body: dict[str, Any]) -> Any:
            async with http.post(path, json=body) as resp:
                assert resp.status < 300, await resp.text()
                return await resp.json()

        await call("/api/workers/register", {"worker_id": "w", "labels": []})
        leases: dict[str, str] = {}
        for n in range(JOBS):
            job = await call("/api/jobs", {"command": f"build {n}"})
            claim = await call("/api/jobs/claim", {"worker_id": "w", "lease_ttl_secs": 600})
            assert claim["job"]["id"] == job["id"]
            leases[job["id"]] = claim["lease"]["lease_id"]
        jobs = list(leases)
        opened = [asyncio.Event() for _ in range(LOG_VIEWERS + EVENT_VIEWERS)]
        watched = [jobs[v % JOBS] for v in range(LOG_VIEWERS)]
        log_viewers = [asyncio.create_task(_events(
            http, f"/api/jobs/{job_id}/logs/stream", opened[v], "end"))
            for v, job_id in enumerate(watched)]
        event_viewers = [asyncio.create_task(_events(
            http, "/api/events?queue=default", opened[LOG_VIEWERS + v], "never"))
            for v in range(EVENT_VIEWERS)]
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(o.wait() for o in opened))
        await wait_for(lambda: hub.viewers == LOG_VIEWERS + EVENT_VIEWERS, TIMEOUT)
        peak = await api_connections(probe)
        for n in range(CHUNKS):
            for job_id, lease_id in leases.items():
                await call(f"/api/jobs/{lease_id}/logs",
                           {"chunks": [{"data": f"{job_id} {n}\n", "sequence": n}]})
            peak = max(peak, await api_connections(probe))
        for lease_id in leases.values():
            await call(f"/api/jobs/{lease_id}/complete", {})
        async with asyncio.timeout(TIMEOUT):
            seen = await asyncio.gather(*log_viewers)
        peak = max(peak, await api_connections(probe))
        for task in event_viewers:
            task.cancel()
        await asyncio.gather(*event_viewers, return_exceptions=True)

    print(f"redis connections of the API process, peak: {peak}")
    assert peak <= settings.redis_max_connections + FIXED
    assert hub.connections == 1
    for job_id, events in zip(watched, seen, strict=True):
        assert [e.json()["data"] for e in events[:-1]] == [
            f"{job_id} {n}\n" for n in range(CHUNKS)]
        assert (events[-1].event, events[-1].json()) == ("end", {"status": "success"})
