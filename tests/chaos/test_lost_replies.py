"""``kill -9`` of the API under load, with eight workers that retry a call whose reply was lost
(connection reset, server gone): every job ends ``success`` and every worker is told 200 for
every job it completed, though some completions were applied before the crash ate their reply."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import pytest

from tests.chaos.fleet import Lab
from tests.chaos.ledger import Completion
from tests.chaos.scenario import Scenario, start

pytestmark = pytest.mark.timeout(90)
JOBS = 300
WORKERS = 8
RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


async def _call(http: aiohttp.ClientSession, url: str, token: str, path: str,
                body: dict[str, Any]) -> tuple[int, Any, int]:
    """POSTs until a reply other than a lost one (no reply, 502/503) arrives; (status, body,
    tries)."""
    tries = 0
    while True:
        tries += 1
        try:
            async with http.post(url + path, json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as reply:
                if reply.status not in (502, 503):
                    return reply.status, await reply.json(), tries
        except RETRYABLE:
            pass
        await asyncio.sleep(0.05)


async def _worker(sc: Scenario, url: str, worker_id: str, stop: asyncio.Event) -> None:
    token = sc.fleet.admin_token
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await _call(http, url, token, "/api/workers/register",
                    {"worker_id": worker_id, "labels": []})
        while not stop.is_set():
            status, claimed, _ = await _call(http, url, token, "/api/jobs/claim",
                                             {"worker_id": worker_id, "queues": [sc.queue],
                                              "lease_ttl_secs": 30, "wait_secs": 0.5})
            if status != 200 or claimed is None:
                continue
            lease = claimed["lease"]["lease_id"]
            await asyncio.sleep(0.01)  # the work
            status, _, tries = await _call(http, url, token, f"/api/jobs/{lease}/complete",
                                           {"outputs": {"by": worker_id}})
            sc.ledger.completions.append(Completion(worker_id, lease, status, tries))


async def test_kill_9_under_load_every_completion_is_told_200(lab: Lab) -> None:
    sc = await start(lab, servers=1)
    (url,) = sc.servers
    stop = asyncio.Event()
    workers = [asyncio.create_task(_worker(sc, url, f"w{n}", stop)) for n in range(WORKERS)]
    async with sc.producer(retries=60) as producer:
        submitting = asyncio.create_task(producer.run(JOBS, concurrency=4))
        for _ in range(3):  # three crashes while jobs are claimed and completed
            await asyncio.sleep(0.7)
            sc.fleet.kill_server(url)
            await asyncio.sleep(0.3)
            await sc.fleet.restart_server(url)
        await submitting
        ids = set(sc.ledger.acknowledged().values())
        for _ in range(400):
            done = {c.lease_id.rsplit(".", 1)[0] for c in sc.ledger.completions
                    if c.status == 200}
            if ids <= done:
                break
            await asyncio.sleep(0.1)
        stop.set()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        report = await sc.verdict(clean=False)

    assert report.counts["ok"] + report.counts["recovered"] >= JOBS
    statuses = {await sc.redis.hget(f"{{{sc.fleet.namespace}:{sc.queue}}}:job:{job_id}",
                                    "status") for job_id in ids}
    assert statuses == {"success"}
    retried = [c for c in sc.ledger.completions if c.tries > 1]
    print(f"completions {len(sc.ledger.completions)}, retried after a lost reply {len(retried)}")
    report.assert_clean()  # refused_completion = 0: every retried completion was told 200
