"""A workflow step that becomes claimable wakes a waiting claim at once, like a submit does."""

from __future__ import annotations

import asyncio
import time

from tests.api.harness import Api

CHAIN = {"name": "chain", "trigger": "push", "jobs": [
    {"id": "a", "command": "echo a"},
    {"id": "b", "command": "echo b", "depends_on": ["a"]},
    {"id": "c", "command": "echo c", "depends_on": ["b"]},
]}


async def test_completing_an_upstream_job_wakes_a_waiting_claim(api: Api) -> None:
    worker = await api.register("ww")
    workflow = (await api.post("/api/workflows", CHAIN)).body
    assert (await api.post(f"/api/workflows/{workflow['id']}/run")).status == 202
    for upstream, downstream in (("a", "b"), ("b", "c")):
        first = await worker.claim()
        assert first["job"]["job_id"] == upstream
        # nothing is claimable now: this claim waits up to 20 s for the next step
        waiting = asyncio.create_task(worker.claim(wait_secs=20))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        started = time.monotonic()
        done = await worker.post(f"/api/jobs/{first['lease']['lease_id']}/complete")
        assert done.status == 200
        claimed = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - started < 1.0, "the waiting claim was not woken"
        assert claimed["job"]["job_id"] == downstream
        await worker.post(f"/api/jobs/{claimed['lease']['lease_id']}/release")
