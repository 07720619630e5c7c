"""Verification quorum, submit and claim rates, and schedules, at the scheduler level."""

from __future__ import annotations

import asyncio

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus, QueueLimits, RateLimit, Verification
from leasehold.scheduler.schedules import Schedules, ScheduleSpec

T0 = 1_700_000_000_000


async def _claim_one(scheduler: Scheduler, worker: str, now: int = T0) -> str | None:
    batch = await scheduler.claim(worker, [], now_ms=now)
    return batch.claims[0].lease.lease_id if batch.claims else None


async def _quorum_job(scheduler: Scheduler, count: int = 2, **extra: object) -> str:
    spec = JobSpec(verification=Verification.model_validate({"count": count, **extra}))
    return (await scheduler.submit(spec, now_ms=T0)).job.id


# -- verification quorum -------------------------------------------------------------------------


async def test_two_distinct_workers_agreeing_finish_the_job_with_the_winning_outputs(
        scheduler: Scheduler) -> None:
    job_id = await _quorum_job(scheduler)
    lease = await _claim_one(scheduler, "w1")
    assert lease is not None
    await scheduler.complete(lease, "w1", {"by": "w1"}, now_ms=T0, verification="abc")
    job = await scheduler.get(job_id)
    assert job.status == JobStatus.QUEUED and job.attempt == 0  # back to ready, no attempt used
    assert job.verification == Verification(count=2, max_votes=5)  # the default cap: 2N+1
    lease2 = await _claim_one(scheduler, "w2")
    assert lease2 is not None
    await scheduler.complete(lease2, "w2", {"by": "w2"}, now_ms=T0, verification="abc")
    job = await scheduler.get(job_id)
    assert job.status == JobStatus.SUCCESS
    assert job.outputs is not None and job.outputs.text == '{"by":"w2"}'
    counters = await scheduler.counters("default")
    assert counters["verify_votes"] == 2 and counters["verify_quorum"] == 1
    events = [e for e in await scheduler.events("default") if e["job"] == job_id]
    assert [e.get("verification") for e in events if e["to"] == "queued"][-1] == "1/2"


async def test_a_worker_never_gets_the_same_job_twice_and_other_jobs_are_not_blocked(
        scheduler: Scheduler) -> None:
    first = await _quorum_job(scheduler)
    lease = await _claim_one(scheduler, "w1")
    await scheduler.complete(lease or "", "w1", {}, now_ms=T0, verification="x")
    # the verified job is at the head of the ready set; w1 looks past it to the next job
    other = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    batch = await scheduler.claim("w1", [], max_jobs=5, now_ms=T0)
    assert [c.job.id for c in batch.claims] == [other]
    assert (await scheduler.claim("w1", [], now_ms=T0)).claims == []
    batch = await scheduler.claim("w2", [], now_ms=T0)
    assert [c.job.id for c in batch.claims] == [first]


async def test_disagreement_waits_for_a_third_worker(scheduler: Scheduler) -> None:
    job_id = await _quorum_job(scheduler)
    for worker, value in (("w1", "A"), ("w2", "B")):
        lease = await _claim_one(scheduler, worker)
        await scheduler.complete(lease or "", worker, {"v": value}, now_ms=T0,
                                 verification=value)
    assert (await scheduler.get(job_id)).status == JobStatus.QUEUED
    lease = await _claim_one(scheduler, "w3")
    await scheduler.complete(lease or "", "w3", {"v": "B3"}, now_ms=T0, verification="B")
    job = await scheduler.get(job_id)
    assert job.status == JobStatus.SUCCESS and job.outputs is not None
    assert job.outputs.text == '{"v":"B3"}'


async def test_a_job_without_quorum_after_max_votes_fails(scheduler: Scheduler) -> None:
    job_id = await _quorum_job(scheduler, count=2, max_votes=2)
    for worker, value in (("w1", "A"), ("w2", "B")):
        lease = await _claim_one(scheduler, worker)
        await scheduler.complete(lease or "", worker, {}, now_ms=T0, verification=value)
    job = await scheduler.get(job_id)
    assert job.status == JobStatus.FAILURE and "verifications agreed" in (job.error or "")


async def test_max_votes_below_count_counts_as_count(scheduler: Scheduler) -> None:
    job_id = await _quorum_job(scheduler, count=2, max_votes=1)
    for worker in ("w1", "w2"):
        lease = await _claim_one(scheduler, worker)
        await scheduler.complete(lease or "", worker, {}, now_ms=T0, verification="A")
    assert (await scheduler.get(job_id)).status == JobStatus.SUCCESS


def test_a_quorum_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        JobSpec.model_validate({"verification": {"count": 0}})


# -- rates -----------------------------------------------------------------------------------------


async def test_submit_rate_refuses_past_the_limit_until_the_window_ends(
        scheduler: Scheduler) -> None:
    await scheduler.set_queue("default", QueueLimits(submit_rate=RateLimit(limit=3, per_secs=10)))
    await scheduler.submit_bulk([JobSpec(), JobSpec()], now_ms=T0)
    with pytest.raises(errors.RateLimited) as caught:
        await scheduler.submit_bulk([JobSpec(), JobSpec()], now_ms=T0 + 1000)  # bulk: all or none
    assert caught.value.retry_after_secs == 9
    await scheduler.submit(JobSpec(), now_ms=T0 + 1000)
    with pytest.raises(errors.RateLimited):
        await scheduler.submit(JobSpec(), now_ms=T0 + 9999)
    await scheduler.submit(JobSpec(), now_ms=T0 + 10_000)
    stats = await scheduler.queue_stats("default")
    assert stats.submit_rate == RateLimit(limit=3, per_secs=10)
    assert stats.counters["submitted"] == 4 and stats.counters["submit_rate_limited"] == 3


async def test_claim_rate_and_its_alias(scheduler: Scheduler) -> None:
    stats = await scheduler.set_queue("default",
                                      QueueLimits(claim_rate=RateLimit(limit=1, per_secs=5)))
    assert stats.claim_rate == stats.rate_limit == RateLimit(limit=1, per_secs=5)
    for _ in range(2):
        await scheduler.submit(JobSpec(), now_ms=T0)
    assert len((await scheduler.claim("w", [], max_jobs=2, now_ms=T0)).claims) == 1
    batch = await scheduler.claim("w", [], now_ms=T0 + 10)
    assert batch.claims == [] and batch.next_due_ms == T0 + 5000  # long-polls wait for this
    with pytest.raises(ValueError, match="not both"):
        QueueLimits.model_validate({"claim_rate": {"limit": 1, "per_secs": 1},
                                    "rate_limit": {"limit": 1, "per_secs": 1}})


# -- schedules -------------------------------------------------------------------------------------


async def test_every_secs_enqueues_each_occurrence_once_across_reapers(
        scheduler: Scheduler) -> None:
    reapers = [Schedules(scheduler) for _ in range(3)]
    created = await reapers[0].create(ScheduleSpec.model_validate(
        {"id": "tick", "every_secs": 2, "job": {"queue": "sched", "command": "echo"}}))
    start = created.created_at_ms
    stored = 0
    for t in range(0, 10_001, 500):
        counts = await asyncio.gather(*(r.run_due(start + t) for r in reapers))
        stored += sum(counts)
    assert stored == 5  # occurrences at +2, +4, +6, +8, +10 s
    jobs, _ = await scheduler.list_jobs("sched")
    occurrences = [(await scheduler.raw_record(j.id))["schedule"] for j in jobs]
    assert occurrences == [f"tick {start + k * 2000}" for k in range(1, 6)]
    assert (await reapers[1].get("tick")).last_run_ms == start + 10_000


async def test_missed_occurrences_run_once_and_delete_stops_the_schedule(
        scheduler: Scheduler) -> None:
    schedules = Schedules(scheduler)
    created = await schedules.create(ScheduleSpec.model_validate(
        {"id": "cron", "cron": "* * * * *", "timezone": "Europe/Paris",
         "job": {"queue": "cronq"}}))
    start = created.created_at_ms
    assert await schedules.run_due(start + 10 * 60_000) == 1  # ten minutes down: one run
    assert await schedules.run_due(start + 10 * 60_000 + 1) == 0
    await schedules.delete("cron")
    assert await schedules.run_due(start + 20 * 60_000) == 0
    assert len((await scheduler.list_jobs("cronq"))[0]) == 1
    with pytest.raises(errors.NotFound):
        await schedules.get("cron")


@pytest.mark.parametrize(("body", "field"), [
    ({"id": "x", "cron": "not a cron", "job": {}}, "cron"),
    ({"id": "x", "every_secs": -1, "job": {}}, "every_secs"),
    ({"id": "x", "cron": "* * * * *", "timezone": "Mars/Olympus", "job": {}}, "timezone"),
    ({"id": "x", "cron": "0 0 * * MON", "job": {}}, "cron"),
    ({"id": "x", "cron": "61 * * * *", "job": {}}, "cron"),
    ({"id": "x", "job": {}}, "cron or every_secs"),
])
def test_bad_schedules_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ScheduleSpec.model_validate(body)
