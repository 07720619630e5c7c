"""Policies across real processes: a submit rate exact over two API processes, and a schedule
enqueued exactly once per occurrence by three reapers."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.keys import Keyspace
from tests.processes import children, leasehold, serve_processes
from tests.redis_server import free_port


def _env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
            "LEASEHOLD_NAMESPACE": f"pol{uuid.uuid4().hex[:10]}",
            "LEASEHOLD_REAP_INTERVAL_SECS": "0.5", "LEASEHOLD_LOG_FORMAT": "json",
            "LEASEHOLD_LOG_LEVEL": "warning"}


async def test_submit_rate_is_exact_across_two_api_processes(redis_url: str,
                                                             tmp_path: Path) -> None:
    env = _env(redis_url)
    with children() as procs:
        urls = serve_processes(procs, env, tmp_path, "--no-auth")
        async with aiohttp.ClientSession() as session:
            async with session.put(urls[0] + "/api/queues/limited", json={
                    "submit_rate": {"limit": 50, "per_secs": 120}}) as resp:
                assert resp.status == 200, await resp.text()

            async def submit(n: int) -> tuple[int, str | None]:
                async with session.post(urls[n % 2] + "/api/jobs",
                                        json={"queue": "limited", "command": str(n)}) as resp:
                    return resp.status, resp.headers.get("Retry-After")

            replies = await asyncio.gather(*(submit(n) for n in range(200)))
            async with session.get(urls[1] + "/api/queues/limited") as resp:
                stats = await resp.json()
    statuses = Counter(status for status, _ in replies)
    assert statuses == {201: 50, 429: 150}
    assert all(after is not None and 1 <= int(after) <= 120
               for status, after in replies if status == 429)
    assert stats["counters"]["submitted"] == 50
    assert stats["counters"]["submit_rate_limited"] == 150


@pytest.mark.timeout(150)
async def test_three_reapers_enqueue_every_occurrence_exactly_once(redis_url: str,
                                                                   tmp_path: Path) -> None:
    env = _env(redis_url)
    ns = env["LEASEHOLD_NAMESPACE"]
    period_ms, run_secs = 2000, 60
    with children() as procs:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.append(leasehold(["serve", "--no-auth", "--port", str(port)], env, tmp_path,
                               "serve"))
        procs[0].wait_ready(url)
        for n in range(3):
            procs.append(leasehold(["reaper"], env, tmp_path, f"reaper-{n}"))
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/api/schedules", json={
                    "id": "tick", "every_secs": period_ms / 1000,
                    "job": {"queue": "ticks", "command": "tick"}}) as resp:
                assert resp.status == 201, await resp.text()
                created: dict[str, Any] = await resp.json()
            await asyncio.sleep(run_secs)
            async with session.delete(url + "/api/schedules/tick") as resp:
                assert resp.status == 200
            deleted_at = time.time()
            occurrences = await _occurrences(redis_url, ns)
            await asyncio.sleep(2 * period_ms / 1000 + 1)
            assert await _occurrences(redis_url, ns) == occurrences  # DELETE stopped it
    start = created["created_at_ms"]
    assert len(occurrences) == len(set(occurrences)), "an occurrence was enqueued twice"
    expected = [start + k * period_ms for k in range(1, len(occurrences) + 1)]
    assert occurrences == expected, "an occurrence is missing"
    assert len(occurrences) >= run_secs * 1000 // period_ms - 2
    assert deleted_at * 1000 - occurrences[-1] < period_ms + 1500


async def _occurrences(redis_url: str, ns: str) -> list[int]:
    """The occurrence (ms) of every job the schedule stored, in enqueue order."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        q = Keyspace(ns).queue("ticks")
        found = []
        for job_id in cast(list[str], await client.zrange(q.index, 0, -1)):
            tag = cast(str | None, await client.hget(q.job(job_id), "schedule"))
            assert tag is not None and tag.startswith("tick ")
            found.append(int(tag.split()[1]))
        return found
    finally:
        await client.aclose()
