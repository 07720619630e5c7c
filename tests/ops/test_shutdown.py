"""SIGTERM to a real ``leasehold serve`` with waiting claims, open SSE streams and an in-flight
request: readiness fails, claims answer empty, streams end with ``event: shutdown``, the in-flight
request finishes, and the process exits within the grace period, one log line per phase."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import Child, children, leasehold, wait_for
from tests.redis_server import free_port

GRACE_SECS = 10.0


@pytest.fixture
def served(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Child]]:
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
           "LEASEHOLD_NAMESPACE": f"sd{uuid.uuid4().hex[:10]}", "LEASEHOLD_LOG_FORMAT": "json",
           "LEASEHOLD_SHUTDOWN_GRACE_SECS": str(GRACE_SECS)}
    with children() as procs:
        port = free_port()
        child = leasehold(["serve", "--no-auth", "--port", str(port)], env, tmp_path, "serve")
        procs.append(child)
        url = f"http://127.0.0.1:{port}"
        child.wait_ready(url)
        yield url, child


async def _claim(session: aiohttp.ClientSession, url: str, worker: str,
                 batch: bool) -> tuple[int, Any, float]:
    body: dict[str, Any] = {"worker_id": worker, "queues": ["idle"], "wait_secs": 30}
    if batch:
        body["max_jobs"] = 4
    async with session.post(url + "/api/jobs/claim", json=body) as resp:
        return resp.status, await resp.json(), time.monotonic()


async def _stream(session: aiohttp.ClientSession, url: str, path: str) -> tuple[list[str], float]:
    """The stream's lines until the server ends it, and when it ended."""
    lines: list[str] = []
    async with session.get(url + path) as resp:
        assert resp.status == 200
        async for raw in resp.content:
            lines.append(raw.decode().rstrip("\r\n"))
    return lines, time.monotonic()


async def _ready_status(session: aiohttp.ClientSession, url: str) -> int | None:
    """/readyz's status, None when the listening socket is already closed."""
    try:
        async with session.get(url + "/readyz") as resp:
            return resp.status
    except aiohttp.ClientError:
        return None


async def test_sigterm_ends_claims_and_streams_and_exits_within_the_grace(
        served: tuple[str, Child]) -> None:
    url, child = served
    async with aiohttp.ClientSession() as session:
        for worker in ("sd-1", "sd-2"):
            async with session.post(url + "/api/workers/register",
                                    json={"worker_id": worker}) as resp:
                assert resp.status == 201
        async with session.post(url + "/api/jobs", json={"command": "x", "queue": "busy"}) as r:
            job_id = (await r.json())["id"]
        claims = [asyncio.create_task(_claim(session, url, "sd-1", batch=False)),
                  asyncio.create_task(_claim(session, url, "sd-2", batch=True))]
        streams = [asyncio.create_task(_stream(session, url, "/api/events?queue=busy")),
                   asyncio.create_task(_stream(session, url, f"/api/jobs/{job_id}/logs/stream"))]
        in_flight = asyncio.create_task(session.post(
            url + "/api/jobs?wait_secs=3", json={"command": "y", "queue": "sync"}))
        await asyncio.sleep(1.0)  # every request above is inside its handler
        assert not any(task.done() for task in (*claims, *streams, in_flight))

        child.signal(signal.SIGTERM)
        signalled = time.monotonic()
        async def unready_now() -> bool:
            return await _ready_status(session, url) != 200

        await wait_for(unready_now, within=5, what="readiness to fail", interval=0.01)
        unready = time.monotonic() - signalled
        results = await asyncio.gather(*claims)
        ended = await asyncio.gather(*streams)
        reply = await in_flight
        assert reply.status == 201  # it ran to its own end, not cut
        code = await child.wait_exit(within=GRACE_SECS)
        took = time.monotonic() - signalled

    assert code == 0
    assert took < GRACE_SECS, took
    (single, null, at_1), (batch, empty, at_2) = results
    assert (single, null) == (200, None) and (batch, empty) == (200, {"claims": []})
    assert unready < 1.0 and max(at_1, at_2) - signalled < 1.0
    for lines, at in ended:
        assert "event: shutdown" in lines, lines
        assert at - signalled < 1.0
    phases = [record["event"] for record in child.logs()
              if str(record.get("event", "")).startswith("shutdown_")]
    assert phases == ["shutdown_started", "shutdown_waiters_released",
                      "shutdown_requests_finished", "shutdown_finished"]
    [released] = child.logs("shutdown_waiters_released")
    assert released["waiting_claims"] == 2 and released["sse_streams"] == 2
    statuses = [record["status"] for record in child.logs("request")]
    assert 499 not in statuses and statuses.count(200) >= 4, statuses
    print(f"\nSIGTERM to exit: {took:.2f}s (grace {GRACE_SECS:g}s)")
