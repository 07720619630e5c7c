"""Lease calls: heartbeat, complete, fail, release, and the fencing that guards each of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus, Lease, RetryPolicy
from leasehold.scheduler.rawjson import decoded
from leasehold.scheduler.reaper import Reaper
from tests.integration.test_queues import T0, assert_one_place

LeaseCall = Callable[[Scheduler, str, int], Awaitable[None]]


async def _heartbeat(s: Scheduler, lease_id: str, now: int) -> None:
    await s.heartbeat(lease_id, "w", now_ms=now)


async def _complete(s: Scheduler, lease_id: str, now: int) -> None:
    await s.complete(lease_id, "w", now_ms=now)


async def _fail(s: Scheduler, lease_id: str, now: int) -> None:
    await s.fail(lease_id, "err", "w", retryable=True, now_ms=now)


async def _release(s: Scheduler, lease_id: str, now: int) -> None:
    await s.release(lease_id, "w", now_ms=now)


ALL_CALLS = [_heartbeat, _complete, _fail, _release]
FINISHING_CALLS = [_complete, _fail, _release]


async def start_one(scheduler: Scheduler, ttl: float = 10, **fields: object) -> Lease:
    await scheduler.submit(JobSpec.model_validate({"lease_ttl_secs": ttl, **fields}), now_ms=T0)
    return (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease


async def test_heartbeat_extends_by_the_requested_ttl(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, ttl=10)
    beat = await scheduler.heartbeat(lease.lease_id, "w", lease_ttl_secs=60, now_ms=T0 + 9_000)
    assert not beat.cancelled
    assert (beat.lease.expires_at_ms, beat.lease.ttl_secs) == (T0 + 69_000, 60)
    assert (beat.lease.granted_at_ms, beat.lease.worker_id) == (T0 + 9_000, "w")
    # alive well past the claim's own TTL
    await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 68_999)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.SUCCESS


async def test_heartbeat_without_ttl_extends_by_the_claims_ttl(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, ttl=10)
    beat = await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 8_000)
    assert beat.lease.expires_at_ms == T0 + 18_000
    beat = await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 17_000)
    assert beat.lease.expires_at_ms == T0 + 27_000
    await Reaper(scheduler).run_once(now_ms=T0 + 26_999)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.RUNNING


async def test_heartbeat_without_ttl_uses_the_ttl_the_claim_asked_for(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=45), now_ms=T0)
    lease = (await scheduler.claim("w", [], lease_ttl_secs=5, now_ms=T0)).claims[0].lease
    beat = await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 4_000)
    assert (beat.lease.expires_at_ms, beat.lease.ttl_secs) == (T0 + 9_000, 5)


async def test_heartbeat_stores_progress_and_message(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler)
    await scheduler.heartbeat(lease.lease_id, "w", progress=40, message="step 2/5", now_ms=T0 + 1)
    job = await scheduler.get(lease.job_id)
    assert (job.progress, job.progress_message) == (40, "step 2/5")
    await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 2)  # keeps both
    job = await scheduler.get(lease.job_id)
    assert (job.progress, job.progress_message) == (40, "step 2/5")


async def test_complete_stores_outputs_and_success(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler)
    await scheduler.complete(lease.lease_id, "w", outputs={"sha": "abc", "n": 3}, now_ms=T0 + 5)
    job = await scheduler.get(lease.job_id)
    assert (job.status, decoded(job.outputs), job.finished_at_ms) == (
        JobStatus.SUCCESS, {"sha": "abc", "n": 3}, T0 + 5)
    assert (await assert_one_place(scheduler, "default"))[job.id] == "done"


@pytest.mark.parametrize("call", ALL_CALLS)
async def test_past_its_deadline_a_lease_is_expired_before_the_reaper_runs(
    scheduler: Scheduler, call: LeaseCall
) -> None:
    lease = await start_one(scheduler, ttl=10)
    with pytest.raises(errors.LeaseExpired):
        await call(scheduler, lease.lease_id, T0 + 10_000)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.RUNNING


@pytest.mark.parametrize("call", ALL_CALLS)
async def test_a_reaped_lease_is_expired(scheduler: Scheduler, call: LeaseCall) -> None:
    lease = await start_one(scheduler, ttl=10, retry_policy=RetryPolicy(max_retries=1))
    await Reaper(scheduler).run_once(now_ms=T0 + 10_000)
    with pytest.raises(errors.LeaseExpired):
        await call(scheduler, lease.lease_id, T0 + 10_001)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 1)


@pytest.mark.parametrize("call", ALL_CALLS)
async def test_an_old_lease_is_superseded_once_the_job_is_claimed_again(
    scheduler: Scheduler, call: LeaseCall
) -> None:
    old = await start_one(scheduler, ttl=10, retry_policy=RetryPolicy(max_retries=1))
    await Reaper(scheduler).run_once(now_ms=T0 + 10_000)
    new = (await scheduler.claim("w", [], now_ms=T0 + 10_001)).claims[0].lease
    with pytest.raises(errors.LeaseSuperseded):
        await call(scheduler, old.lease_id, T0 + 10_002)
    await scheduler.complete(new.lease_id, "w", now_ms=T0 + 10_003)  # the new lease still works


@pytest.mark.parametrize("call", [_complete, _fail])
async def test_a_cancelled_job_refuses_its_outcome(scheduler: Scheduler, call: LeaseCall) -> None:
    lease = await start_one(scheduler)
    await scheduler.cancel(lease.job_id, now_ms=T0 + 1)
    with pytest.raises(errors.JobCancelled):
        await call(scheduler, lease.lease_id, T0 + 2)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.CANCELLED


async def test_heartbeat_of_a_cancelled_job_says_so_without_raising(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, ttl=10)
    await scheduler.cancel(lease.job_id, now_ms=T0 + 1)
    beat = await scheduler.heartbeat(lease.lease_id, "w", lease_ttl_secs=60, now_ms=T0 + 2)
    assert beat.cancelled
    assert beat.lease.lease_id == lease.lease_id
    with pytest.raises(errors.JobCancelled):
        await scheduler.release(lease.lease_id, "w", now_ms=T0 + 3)


@pytest.mark.parametrize("call", [_heartbeat, _fail, _release])
async def test_after_the_outcome_is_reported_the_lease_is_finished(
    scheduler: Scheduler, call: LeaseCall
) -> None:
    lease = await start_one(scheduler)
    await scheduler.complete(lease.lease_id, "w", outputs={"v": 1}, now_ms=T0 + 1)
    with pytest.raises(errors.JobFinished):
        await call(scheduler, lease.lease_id, T0 + 2)
    job = await scheduler.get(lease.job_id)
    assert (job.status, decoded(job.outputs)) == (JobStatus.SUCCESS, {"v": 1})


async def test_a_retried_failure_finishes_its_lease(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, retry_policy=RetryPolicy(max_retries=3))
    await scheduler.fail(lease.lease_id, "flaky", "w", retryable=True, now_ms=T0 + 1)
    with pytest.raises(errors.JobFinished):
        await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 2)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.QUEUED


@pytest.mark.parametrize("call", ALL_CALLS)
@pytest.mark.parametrize("lease_id", ["", "garbage", "default.short.x", "a.b.c.d"])
async def test_a_malformed_lease_id_is_not_found(
    scheduler: Scheduler, call: LeaseCall, lease_id: str
) -> None:
    with pytest.raises(errors.LeaseNotFound):
        await call(scheduler, lease_id, T0)


@pytest.mark.parametrize("call", ALL_CALLS)
async def test_a_lease_of_an_unknown_job_is_not_found(
    scheduler: Scheduler, call: LeaseCall
) -> None:
    lease = await start_one(scheduler)
    unknown = "default.AAAAAAAAAAAAAAAAAAAAAA." + lease.lease_id.rsplit(".", 1)[1]
    with pytest.raises(errors.LeaseNotFound):
        await call(scheduler, unknown, T0 + 1)
    made_up = lease.job_id + ".BBBBBBBBBBBBBBBBBBBBBB"
    with pytest.raises(errors.LeaseSuperseded):
        await call(scheduler, made_up, T0 + 1)


async def test_a_never_claimed_job_has_no_lease(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(), now_ms=T0)).job
    with pytest.raises(errors.LeaseNotFound):
        await scheduler.complete(job.id + ".BBBBBBBBBBBBBBBBBBBBBB", now_ms=T0)


@pytest.mark.parametrize("call", [_heartbeat, *FINISHING_CALLS])
async def test_another_worker_cannot_use_the_lease_and_nothing_changes(
    scheduler: Scheduler, call: LeaseCall
) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=10), now_ms=T0)
    lease = (await scheduler.claim("owner", [], now_ms=T0)).claims[0].lease
    before = await scheduler.raw_record(lease.job_id)
    with pytest.raises(errors.NotLeaseOwner):
        await call(scheduler, lease.lease_id, T0 + 1)  # called as worker "w"
    assert await scheduler.raw_record(lease.job_id) == before
    beat = await scheduler.heartbeat(lease.lease_id, "owner", now_ms=T0 + 2)
    assert beat.lease.expires_at_ms == T0 + 10_002


async def test_empty_worker_id_skips_the_ownership_check(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(), now_ms=T0)
    lease = (await scheduler.claim("owner", [], now_ms=T0)).claims[0].lease
    await scheduler.complete(lease.lease_id, now_ms=T0 + 1)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.SUCCESS


async def test_release_requeues_without_using_an_attempt(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, retry_policy=RetryPolicy(max_retries=0))
    await scheduler.release(lease.lease_id, "w", now_ms=T0 + 1)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 0)
    assert (await assert_one_place(scheduler, "default"))[job.id].startswith("ready:")
    with pytest.raises(errors.LeaseNotFound):
        await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 2)

    again = (await scheduler.claim("w2", [], now_ms=T0 + 1)).claims[0].lease
    assert (again.job_id, again.attempt) == (lease.job_id, 0)
    counters = await scheduler.counters("default")
    assert counters["claimed"] == 2 and "retried" not in counters


async def test_release_keeps_the_jobs_place_ahead_of_later_jobs(scheduler: Scheduler) -> None:
    first = await start_one(scheduler)
    later = (await scheduler.submit(JobSpec(), now_ms=T0 + 1)).job.id
    await scheduler.release(first.lease_id, "w", now_ms=T0 + 2)
    batch = await scheduler.claim("w", [], max_jobs=2, now_ms=T0 + 3)
    assert [c.job.id for c in batch.claims] == [first.job_id, later]


async def test_timeout_caps_the_deadline_across_heartbeats(scheduler: Scheduler) -> None:
    lease = await start_one(scheduler, ttl=4, timeout_secs=10)
    assert lease.expires_at_ms == T0 + 4_000
    expiries = []
    for t, ttl in ((3_000, None), (6_000, None), (8_000, 3600.0), (9_999, None)):
        beat = await scheduler.heartbeat(lease.lease_id, "w", lease_ttl_secs=ttl, now_ms=T0 + t)
        expiries.append(beat.lease.expires_at_ms - T0)
    assert expiries == [7_000, 10_000, 10_000, 10_000]
    with pytest.raises(errors.LeaseExpired):
        await scheduler.heartbeat(lease.lease_id, "w", lease_ttl_secs=3600, now_ms=T0 + 10_000)


async def test_a_timeout_shorter_than_the_ttl_caps_the_first_deadline(
    scheduler: Scheduler,
) -> None:
    lease = await start_one(scheduler, ttl=60, timeout_secs=5)
    assert lease.expires_at_ms == T0 + 5_000


async def test_configured_default_lease_ttl_applies_when_neither_claim_nor_job_sets_one(
    redis: Redis, settings: Settings
) -> None:
    sched = Scheduler(redis, settings.model_copy(update={"default_lease_ttl_secs": 7.5}))
    await sched.submit(JobSpec(), now_ms=T0)
    await sched.submit(JobSpec(lease_ttl_secs=3), now_ms=T0)
    first, second = (await sched.claim("w", [], max_jobs=2, now_ms=T0)).claims
    assert first.lease.expires_at_ms == T0 + 7500
    assert second.lease.expires_at_ms == T0 + 3000
