"""A cached token is refused on every API process at once: a worker revoked, drained, or an API
token deleted through process B is refused (or drained) on process A within a second, although
A remembered the token from a moment before."""

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

ADMIN = "lha_test-admin-token-for-two-processes"


@pytest.fixture
def two_apis(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url, "LEASEHOLD_ADMIN_TOKEN": ADMIN,
           "LEASEHOLD_NAMESPACE": f"ac{uuid.uuid4().hex[:10]}", "LEASEHOLD_LOG_FORMAT": "json",
           "LEASEHOLD_AUTH_CACHE_SECS": "30"}
    with children() as procs:
        urls = serve_processes(procs, env, tmp_path)
        yield urls[0], urls[1]


async def _call(session: aiohttp.ClientSession, method: str, url: str, token: str,
                body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body,
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def _register(session: aiohttp.ClientSession, url: str, worker: str) -> str:
    status, reg = await _call(session, "POST", url + "/api/registration-tokens", ADMIN,
                              {"ttl_secs": 60, "uses": 1})
    assert status == 201, reg
    status, body = await _call(session, "POST", url + "/api/workers/register", reg["token"],
                               {"worker_id": worker})
    assert status == 201, body
    return str(body["worker_token"])


async def _until(check: Any, within: float = 1.0) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, "not within 1 s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_worker_revoked_on_b_is_refused_on_a_within_a_second(
        two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    async with aiohttp.ClientSession() as session:
        token = await _register(session, a, "w-revoked")
        claim = {"queues": ["ac"]}
        # A now remembers the token
        for _ in range(3):
            assert (await _call(session, "POST", a + "/api/jobs/claim", token, claim))[0] == 200
        assert (await _call(session, "DELETE", b + "/api/workers/w-revoked", ADMIN))[0] == 200

        async def refused() -> bool:
            status, _ = await _call(session, "POST", a + "/api/jobs/claim", token, claim)
            return status == 401

        took = await _until(refused)
    print(f"\nrevoke on B to 401 on A: {took * 1000:.0f} ms")


async def test_a_worker_drained_on_b_gets_no_job_on_a(two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    async with aiohttp.ClientSession() as session:
        token = await _register(session, a, "w-drained")
        claim = {"queues": ["ad"]}
        assert (await _call(session, "POST", a + "/api/jobs/claim", token, claim)) == (200, None)
        assert (await _call(session, "POST", b + "/api/workers/w-drained/drain", ADMIN))[0] == 200
        status, job = await _call(session, "POST", b + "/api/jobs", ADMIN,
                                  {"command": "x", "queue": "ad"})
        assert status == 201
        assert (await _call(session, "POST", a + "/api/jobs/claim", token, claim)) == (200, None)
        status, after = await _call(session, "GET", a + f"/api/jobs/{job['id']}", ADMIN)
        assert after["status"] == "queued"


async def test_an_api_token_deleted_on_b_is_refused_on_a(two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    async with aiohttp.ClientSession() as session:
        status, made = await _call(session, "POST", a + "/api/tokens", ADMIN,
                                   {"role": "viewer", "name": "v"})
        assert status == 201
        for _ in range(3):
            assert (await _call(session, "GET", a + "/api/queues", made["token"]))[0] == 200
        assert (await _call(session, "DELETE", b + f"/api/tokens/{made['id']}", ADMIN))[0] \
            in (200, 204)

        async def refused() -> bool:
            return (await _call(session, "GET", a + "/api/queues", made["token"]))[0] == 401

        await _until(refused)
