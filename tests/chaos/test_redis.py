"""Redis faults: ``kill -9`` and restart with AOF (nothing acknowledged is lost, F7) and without
persistence (documented loss, the service recovers, F6); a full Redis (F14)."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from leasehold.api.fleet.client import Unavailable
from tests.chaos.fleet import Lab
from tests.chaos.ledger import TERMINAL
from tests.chaos.observe import job_records
from tests.chaos.scenario import Scenario, start
from tests.processes import wait_for

pytestmark = pytest.mark.timeout(60)
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _restart_under_load(sc: Scenario, jobs: int) -> float:
    """Submits ``jobs`` while Redis is killed and started again; returns the moment just before
    the new Redis starts: any submit acknowledged before then was written to the old one (an
    acknowledgement can reach a busy event loop after the kill)."""
    async with sc.producer(work_secs=0.05) as producer:
        submitting = asyncio.create_task(producer.run(jobs, concurrency=3, pace=0.06))
        await asyncio.sleep(0.6)
        sc.redis_server.kill()
        await asyncio.sleep(0.6)
        assert not ready(sc.servers[0])  # readiness follows Redis
        killed = time.monotonic()
        sc.redis_server.restart()
        await wait_for(lambda: ready(sc.servers[0]), 5, "/readyz after Redis came back")
        await submitting
    assert producer.statuses[503] > 0, producer.statuses  # a 503, not a 500 or a hang
    assert producer.missing_retry_after == 0
    assert set(producer.statuses) <= {0, 201, 503}, producer.statuses
    return killed


async def test_redis_restart_with_aof_loses_no_acknowledged_job(lab: Lab) -> None:
    sc = await start(lab, *AOF)
    for _ in range(2):
        await sc.fleet.agent(sc.servers[0], sc.queue, slots=2)
    await _restart_under_load(sc, 60)
    report = await sc.verdict()
    assert report.counts["ok"] == 60 and report.counts["lost_by_fault"] == 0


async def test_redis_restart_without_persistence_loses_data_but_the_service_recovers(
        lab: Lab) -> None:
    sc = await start(lab)
    old = await sc.fleet.agent(sc.servers[0], sc.queue, slots=2)
    killed = await _restart_under_load(sc, 60)
    sc.ledger.mark_lossy_before(killed)
    # the worker's registration was lost with the rest: it is refused and stops ...
    await wait_for(lambda: not old.proc.alive(), 20, "the old agent to be refused")
    assert old.proc.proc.returncode == 3, old.proc.stderr()
    # ... and a worker registered anew runs what was submitted after the restart
    fresh = await sc.fleet.agent(sc.servers[0], sc.queue, slots=2)
    async with sc.producer(work_secs=1.0) as producer:
        late = await producer.run(2, concurrency=2)
    await wait_for(lambda: len(fresh.started()) >= 2, 10, "the new agent to run the new jobs")
    fresh.kill()  # and a worker dying now is still recovered: the reaper still sees the queue
    await sc.fleet.agent(sc.servers[0], sc.queue, slots=2)
    report = await sc.verdict(complete_history=False)

    assert report.counts["lost_by_fault"] > 0  # documented: acknowledged jobs were lost
    assert report.counts["ok"] + report.counts["lost_by_fault"] == 62
    stored = {r.job_id: r.status for r in
              await job_records(sc.redis, sc.fleet.namespace, [sc.queue])}
    assert all(s.job_id and stored.get(s.job_id) in TERMINAL for s in late)


async def _stored_consistently(sc: Scenario) -> int:
    """The job count, after checking that every structure of the queue agrees on it."""
    q = f"{{{sc.fleet.namespace}:{sc.queue}}}:"
    index = await sc.redis.zcard(q + "index")
    submitted = int(await sc.redis.hget(q + "stats", "submitted") or 0)
    records = await job_records(sc.redis, sc.fleet.namespace, [sc.queue])
    await sc.tail.poll()
    enqueued = sum(1 for t in sc.tail.transitions() if t.src == "" and t.dst == "queued")
    assert index == submitted == len(records) == enqueued, (index, submitted, len(records),
                                                            enqueued)
    return index


async def test_full_redis_refuses_submits_with_503_and_recovers(lab: Lab) -> None:
    sc = await start(lab, "--maxmemory-policy", "noeviction")
    url = sc.servers[0]
    used = int((await sc.redis.info("memory"))["used_memory"])
    await sc.redis.config_set("maxmemory", used + 1_500_000)
    payload = "x" * 20_000
    async with sc.producer(work_secs=0.01, retries=0) as producer, \
            sc.fleet.client(url) as admin:
        refusals = 0
        for n in range(500):
            submit = await producer.attempt(f"fill-{n}", url, payload=payload)
            refusals = refusals + 1 if submit.outcome != "ok" else 0
            if refusals == 5:
                break
        assert refusals == 5, "Redis never filled up"
        assert set(producer.statuses) == {201, 503} and producer.missing_retry_after == 0
        accepted = producer.statuses[201]
        assert accepted > 10
        with pytest.raises(Unavailable) as refused:
            await admin.request("POST", "/api/jobs", {"queue": sc.queue, "payload": payload},
                                retry=False)
        assert refused.value.code == "unavailable" and "out of memory" in refused.value.message
        # nothing half-written, and reads still work
        assert await _stored_consistently(sc) == accepted
        listed = await admin.request("GET", "/api/jobs", params={"queue": sc.queue,
                                                                  "limit": "1000"})
        assert len(listed["jobs"]) == accepted
        assert ready(url)

        await sc.redis.config_set("maxmemory", 0)  # memory frees (here: an operator raises it)
        after = await producer.attempt("after-oom", url)
        assert after.outcome == "ok"
        await sc.fleet.agent(url, sc.queue, slots=4)
        report = await sc.verdict()
    assert report.counts["ok"] == accepted + 1
    assert report.counts["phantom"] == producer.statuses[503]  # each refusal wrote nothing
    assert report.counts["recovered"] == 0
