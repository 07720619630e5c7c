"""Worker faults: ``kill -9`` of an agent mid-job, and a paused (SIGSTOP) zombie worker that
resumes after its job was leased again (F1, F2)."""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest

from tests.chaos.fleet import LEASE_TTL_SECS, REAP_INTERVAL_SECS, Lab
from tests.chaos.ledger import LeaseCall
from tests.chaos.observe import redis_now_ms
from tests.chaos.scenario import start
from tests.processes import wait_for

pytestmark = pytest.mark.timeout(60)
RECOVERY_BOUND_MS = round((LEASE_TTL_SECS + REAP_INTERVAL_SECS + 1.0) * 1000)


async def test_kill_9_of_a_worker_mid_job_loses_nothing(lab: Lab) -> None:
    sc = await start(lab)
    url = sc.servers[0]
    victim = await sc.fleet.agent(url, sc.queue, slots=3)
    async with sc.producer(work_secs=0.6) as producer:
        submitting = asyncio.create_task(producer.run(24, concurrency=3))
        await wait_for(lambda: len(victim.started()) >= 3, 15, "the victim to run three jobs")
        killed_at_ms = await redis_now_ms(sc.redis)
        victim.kill()
        held = {str(e["lease_id"]) for e in victim.started()}
        await sc.fleet.agent(url, sc.queue, slots=3)
        await submitting
        report = await sc.verdict()

    assert report.counts["ok"] == 24
    # every lease the dead worker held expired and was handed back within lease TTL + reap
    # interval (C4), and each job of its that ran twice was one of its own
    expiries = {t.lease: t for t in sc.tail.transitions()
                if t.src == "running" and t.dst == "queued" and t.lease in held}
    finished = {t.lease for t in sc.tail.transitions()
                if t.src == "running" and t.dst != "queued" and t.lease in held}
    orphaned = held - finished
    assert orphaned, "the kill landed while the victim held leases"
    assert set(expiries) == orphaned
    for transition in expiries.values():
        assert transition.t_ms - killed_at_ms <= RECOVERY_BOUND_MS, transition
    victim_jobs = {str(e["job_id"]) for e in victim.started()}
    duplicated = [e.job_id for e in sc.ledger.executions() if e.event == "start"]
    assert {j for j in duplicated if duplicated.count(j) > 1} <= victim_jobs


@pytest.mark.parametrize("resume", ["after_rerun_finished", "while_rerun_runs"])
async def test_paused_zombie_worker_gets_409_for_every_call(lab: Lab, resume: str) -> None:
    sc = await start(lab)
    url = sc.servers[0]
    async with sc.producer(work_secs=0.2 if resume == "after_rerun_finished" else 2.0) as producer:
        submit = await producer.submit()
    assert submit.outcome == "ok" and submit.job_id
    out = lab.root / f"zombie-{resume}.jsonl"
    zombie = sc.fleet.python("tests.chaos.zombie", [
        url, await sc.fleet.registration_token(url), sc.queue, str(out)], "zombie")
    await wait_for(lambda: out.exists() and b'"claimed"' in out.read_bytes(), 15,
                   "the zombie to claim the job")
    lease = orjson.loads(out.read_bytes().splitlines()[0])["lease_id"]
    zombie.signal(signal.SIGSTOP)

    # its lease expires, the reaper hands the job back, a healthy agent takes it
    await sc.fleet.agent(url, sc.queue, slots=1)

    async def rerun(status: str) -> bool:
        record = await sc.redis.hmget(f"{{{sc.fleet.namespace}:{sc.queue}}}:job:{submit.job_id}",
                                      "status", "lease_id")
        return bool(record[0] == status and record[1] != lease)

    target = "success" if resume == "after_rerun_finished" else "running"
    await wait_for(lambda: rerun(target), 15, f"the job to be {target} under a new lease")
    resumed_at = time.monotonic()
    zombie.signal(signal.SIGCONT)
    await wait_for(lambda: not zombie.alive(), 15, "the zombie to give up")
    calls = [orjson.loads(line) for line in out.read_bytes().splitlines()[1:]]
    after = [c for c in calls if c["t"] >= resumed_at]
    sc.ledger.stale_calls.extend(LeaseCall(lease, c["call"], c["status"]) for c in after)
    assert {c["call"] for c in after} >= {"heartbeat", "logs", "complete", "fail", "release"}
    assert {(c["status"], c["error"]) for c in after} == {(409, "lease_superseded")}, after

    report = await sc.verdict()
    assert report.counts["ok"] == 1
    finishers = [t for t in sc.tail.transitions() if t.dst == "success"]
    assert [t.lease for t in finishers] != [lease] and len(finishers) == 1
    assert finishers[0].attempt == 1  # the zombie's expired lease used one attempt
