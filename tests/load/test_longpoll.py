"""Benchmark: 1,000 idle long-polling claimers on one API process, and submit -> claim latency."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings
from tests.redis_server import RedisServer

WAITERS = 1000
SAMPLES = 200
RESULTS = Path(__file__).parent / "results" / "longpoll.json"


async def _connected_clients(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        info: dict[str, Any] = await client.info("clients")
        return int(info["connected_clients"]) - 1  # not counting this probe
    finally:
        await client.aclose()


@pytest.mark.load
async def test_idle_long_polls_and_submit_to_claim_latency(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, auth=False, namespace="bench")
    app = TestServer(create_app(settings))
    await app.start_server()
    latencies: list[float] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(base_url=str(app.make_url("/")),
                                         connector=connector) as http:

            async def waiter(n: int) -> None:
                async with http.post("/api/workers/register", json={"worker_id": f"w{n}"}):
                    pass  # a claim names a registered worker
                while not stop.is_set():
                    async with http.post("/api/jobs/claim", json={
                            "worker_id": f"w{n}", "labels": [], "wait_secs": 30}) as resp:
                        claim = await resp.json()
                    if claim is None:
                        continue
                    latencies.append(time.perf_counter() - claim["job"]["payload"]["t"])
                    async with http.post(
                            f"/api/jobs/{claim['lease']['lease_id']}/complete") as done:
                        assert done.status == 200

            tasks = [asyncio.create_task(waiter(n)) for n in range(WAITERS)]
            await asyncio.sleep(3)  # every waiter has made its first claim and sleeps
            idle_connections = await _connected_clients(server.url)
            for _ in range(SAMPLES):
                async with http.post("/api/jobs", json={
                        "payload": {"t": time.perf_counter()}}) as resp:
                    assert resp.status == 201
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 10
            while len(latencies) < SAMPLES and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await app.close()
        server.stop()
    assert len(latencies) == SAMPLES, "every submitted job reached a waiting claimer"
    ms = sorted(x * 1000 for x in latencies)
    report = {
        "idle_waiters": WAITERS,
        "redis_connections_while_idle": idle_connections,
        "submit_to_claim_ms_p50": round(statistics.median(ms), 2),
        "submit_to_claim_ms_p99": round(ms[int(len(ms) * 0.99) - 1], 2),
        "samples": SAMPLES,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
