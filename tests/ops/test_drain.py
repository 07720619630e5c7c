"""Drain and revoke are immediate across API processes: a worker waiting on process A, drained or
revoked through process B, gets its empty reply at once, and no job reaches it afterwards."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import children, serve_processes


@pytest.fixture
def two_apis(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
           "LEASEHOLD_NAMESPACE": f"dr{uuid.uuid4().hex[:10]}", "LEASEHOLD_LOG_FORMAT": "json"}
    with children() as procs:
        urls = serve_processes(procs, env, tmp_path, "--no-auth")
        yield urls[0], urls[1]


async def _call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None,
                expect: int = 200) -> Any:
    async with session.request(method, url, json=body) as resp:
        assert resp.status == expect, await resp.text()
        return await resp.json()


async def _waiting_claim(session: aiohttp.ClientSession, url: str, worker: str,
                         **extra: Any) -> tuple[Any, float]:
    reply = await _call(session, "POST", url + "/api/jobs/claim", {
        "worker_id": worker, "queues": ["dq"], "wait_secs": 20, **extra})
    return reply, time.monotonic()


@pytest.mark.parametrize("action", ["drain", "revoke"])
async def test_a_drain_or_revoke_on_b_ends_a_claim_waiting_on_a(
        two_apis: tuple[str, str], action: str) -> None:
    a, b = two_apis
    async with aiohttp.ClientSession() as session:
        for worker in ("w-single", "w-batch"):
            await _call(session, "POST", a + "/api/workers/register", {"worker_id": worker}, 201)
        single = asyncio.create_task(_waiting_claim(session, a, "w-single"))
        batch = asyncio.create_task(_waiting_claim(session, a, "w-batch", max_jobs=5))
        await asyncio.sleep(1.0)
        assert not single.done() and not batch.done()

        stopped = time.monotonic()
        for worker in ("w-single", "w-batch"):
            if action == "drain":
                await _call(session, "POST", b + f"/api/workers/{worker}/drain")
            else:
                await _call(session, "DELETE", b + f"/api/workers/{worker}")
        (null, at_single), (empty, at_batch) = await asyncio.gather(single, batch)
        assert null is None and empty == {"claims": []}
        took = max(at_single, at_batch) - stopped
        assert took < 1.0, took

        job = await _call(session, "POST", b + "/api/jobs", {"command": "x", "queue": "dq"}, 201)
        if action == "drain":  # a drained worker's claims, waiting or not, get nothing
            again, _ = await _waiting_claim(session, a, "w-single", wait_secs=1)
            assert again is None
        assert (await _call(session, "GET", a + f"/api/jobs/{job['id']}"))["status"] == "queued"
    print(f"\n{action} on B to empty reply on A: {took * 1000:.0f} ms")


async def test_an_undrained_worker_waits_and_claims_again(two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    async with aiohttp.ClientSession() as session:
        await _call(session, "POST", a + "/api/workers/register", {"worker_id": "w-back"}, 201)
        await _call(session, "POST", b + "/api/workers/w-back/drain")
        await _call(session, "POST", b + "/api/workers/w-back/undrain")
        waiting = asyncio.create_task(_waiting_claim(session, a, "w-back"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # it waits again, rather than answering empty at once
        job = await _call(session, "POST", b + "/api/jobs", {"command": "x", "queue": "dq"}, 201)
        claim, _ = await waiting
        assert claim["job"]["id"] == job["id"]
