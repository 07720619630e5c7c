"""``kill -9`` of an API process in the middle of submits, claims, heartbeats and completions
(F5): a client retrying with its idempotency key loses nothing and duplicates nothing, leases
whose replies were lost are recovered, and the surviving process keeps serving."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.fleet import Lab
from tests.chaos.scenario import start

pytestmark = pytest.mark.timeout(60)


async def test_kill_9_of_an_api_process_mid_request(lab: Lab) -> None:
    sc = await start(lab, servers=2)
    doomed, survivor = sc.servers
    for url in (doomed, doomed, survivor):  # the doomed process also serves most workers
        await sc.fleet.agent(url, sc.queue, slots=2)
    async with sc.producer(work_secs=0.05) as producer:
        submitting = asyncio.create_task(producer.run(80, concurrency=4, pace=0.08))
        await asyncio.sleep(0.6)
        sc.fleet.kill_server(doomed)  # mid-request: four submitters and three agents are busy
        await asyncio.sleep(0.5)
        await sc.fleet.restart_server(doomed)
        await submitting
        report = await sc.verdict()

    assert report.counts["ok"] == 80
    assert report.counts["phantom"] == 0  # every unknown outcome was settled by a retry
    interrupted = [s for s in sc.ledger.submits if s.server == doomed and s.outcome != "ok"]
    assert interrupted, "the kill landed while requests were in flight"
    # the other process never failed a request
    assert all(s.outcome == "ok" for s in sc.ledger.submits if s.server == survivor)
