"""Long-poll claims (wait_secs): woken by a submit, by a due delayed job, or ending with null."""

from __future__ import annotations

import asyncio
import time

from tests.api.harness import Api


async def test_waiting_claim_returns_a_job_submitted_meanwhile(api: Api) -> None:
    worker = await api.register("lp1")
    waiting = asyncio.create_task(worker.claim(wait_secs=5))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    submitted_at = time.monotonic()
    job = await api.submit(command="wake up")
    claimed = await waiting
    assert time.monotonic() - submitted_at < 2
    assert claimed["job"]["id"] == job["id"] and claimed["lease"]["worker_id"] == "lp1"


async def test_waiting_claim_with_no_job_returns_null_after_the_wait(api: Api) -> None:
    worker = await api.register("lp2")
    started = time.monotonic()
    assert await worker.claim(wait_secs=1) is None
    assert 0.9 <= time.monotonic() - started < 2
    started = time.monotonic()
    assert await worker.claim(wait_secs=1, max_jobs=3) == {"claims": []}
    assert 0.9 <= time.monotonic() - started < 2


async def test_waiting_claim_ignores_jobs_it_cannot_run(api: Api) -> None:
    worker = await api.register("lp3", ["cpu"])
    waiting = asyncio.create_task(worker.claim(wait_secs=1, labels=["cpu"]))
    await asyncio.sleep(0.2)
    await api.submit(command="needs a gpu", required_labels=["gpu"])
    assert await waiting is None


async def test_due_delayed_job_wakes_a_claim_waiting_since_before(api: Api) -> None:
    worker = await api.register("lp4")
    job = await api.submit(command="later", delay_secs=1)
    started = time.monotonic()
    claimed = await worker.claim(wait_secs=5)
    elapsed = time.monotonic() - started
    assert claimed["job"]["id"] == job["id"]
    assert 0.7 <= elapsed < 2.5


async def test_delayed_job_submitted_during_the_wait_is_claimed_when_due(api: Api) -> None:
    worker = await api.register("lp5")
    waiting = asyncio.create_task(worker.claim(wait_secs=5))
    await asyncio.sleep(0.3)
    submitted_at = time.monotonic()
    job = await api.submit(command="later", delay_secs=1)
    claimed = await waiting
    elapsed = time.monotonic() - submitted_at
    assert claimed["job"]["id"] == job["id"]
    assert 0.7 <= elapsed < 2.5
