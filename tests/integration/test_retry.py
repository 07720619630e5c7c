"""Retries: attempts, backoff shapes and jitter, dead letters, expiry and timeout as failures."""

from __future__ import annotations

import pytest

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import (
    Backoff,
    ExponentialBackoff,
    ExponentialParams,
    FixedBackoff,
    FixedParams,
    JobSpec,
    JobStatus,
    Lease,
    RetryPolicy,
)
from leasehold.scheduler.reaper import Reaper
from tests.integration.test_queues import T0, assert_one_place


def exponential(base: float, cap: float) -> Backoff:
    return ExponentialBackoff(Exponential=ExponentialParams(base_secs=base, max_secs=cap))


async def claim_at(scheduler: Scheduler, now_ms: int) -> Lease:
    batch = await scheduler.claim("w", [], now_ms=now_ms)
    assert len(batch.claims) == 1, f"nothing claimable at {now_ms - T0}"
    return batch.claims[0].lease


async def retry_delays(scheduler: Scheduler, policy: RetryPolicy, failures: int) -> list[int]:
    """Fails the job ``failures`` times, reclaiming it when due; the wait before each retry."""
    await scheduler.submit(JobSpec(retry_policy=policy), now_ms=T0)
    now, delays = T0, []
    for _ in range(failures):
        lease = await claim_at(scheduler, now)
        outcome = await scheduler.fail(lease.lease_id, "boom", retryable=True, now_ms=now)
        assert outcome.will_retry and outcome.retry_at_ms is not None
        delay = outcome.retry_at_ms - now
        if delay:
            early = await scheduler.claim("w", [], now_ms=outcome.retry_at_ms - 1)
            assert early.claims == [] and early.next_due_ms == outcome.retry_at_ms
        delays.append(delay)
        now = outcome.retry_at_ms
    return delays


async def test_retryable_failure_uses_an_attempt_and_requeues_at_once(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit(JobSpec(retry_policy=RetryPolicy(max_retries=2)), now_ms=T0)
    lease = await claim_at(scheduler, T0)
    outcome = await scheduler.fail(lease.lease_id, "exit 1", "w", retryable=True, now_ms=T0 + 1)
    assert (outcome.will_retry, outcome.retry_at_ms) == (True, T0 + 1)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt, job.error) == (JobStatus.QUEUED, 1, "exit 1")
    assert (await assert_one_place(scheduler, "default"))[job.id].startswith("ready:")
    again = await claim_at(scheduler, T0 + 1)
    assert (again.job_id, again.attempt) == (lease.job_id, 1)


async def test_no_backoff_waits_nothing(scheduler: Scheduler) -> None:
    assert await retry_delays(scheduler, RetryPolicy(max_retries=3), 3) == [0, 0, 0]


async def test_fixed_backoff_waits_its_delay_each_time(scheduler: Scheduler) -> None:
    policy = RetryPolicy(max_retries=3, backoff=FixedBackoff(Fixed=FixedParams(delay_secs=2.5)))
    assert await retry_delays(scheduler, policy, 3) == [2_500, 2_500, 2_500]


async def test_exponential_backoff_doubles_from_base_up_to_the_cap(scheduler: Scheduler) -> None:
    policy = RetryPolicy(max_retries=6, backoff=exponential(1.5, 10))
    assert await retry_delays(scheduler, policy, 6) == [
        1_500, 3_000, 6_000, 10_000, 10_000, 10_000]


async def test_an_exponential_cap_below_its_base_is_every_wait(scheduler: Scheduler) -> None:
    policy = RetryPolicy(max_retries=2, backoff=exponential(10, 5))
    assert await retry_delays(scheduler, policy, 2) == [5_000, 5_000]


async def test_retry_backoff_is_visible_on_the_job_and_in_its_place(
    scheduler: Scheduler,
) -> None:
    policy = RetryPolicy(max_retries=1, backoff=exponential(4, 4))
    await scheduler.submit(JobSpec(retry_policy=policy), now_ms=T0)
    lease = await claim_at(scheduler, T0)
    await scheduler.fail(lease.lease_id, "x", retryable=True, now_ms=T0 + 100)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.delayed_until_ms) == (JobStatus.QUEUED, T0 + 4_100)
    assert (await assert_one_place(scheduler, "default"))[job.id] == "delayed"


@pytest.mark.parametrize("jitter", [0.25, 1.0])
async def test_jitter_keeps_each_delay_within_its_fraction(
    scheduler: Scheduler, jitter: float
) -> None:
    policy = RetryPolicy(max_retries=40, jitter=jitter,
                         backoff=FixedBackoff(Fixed=FixedParams(delay_secs=10)))
    delays = await retry_delays(scheduler, policy, 40)
    assert all(10_000 * (1 - jitter) <= d <= 10_000 for d in delays), delays
    assert len(set(delays)) > 1  # randomized, not one fixed delay


async def test_exhausted_retries_end_in_failure_with_the_error(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(retry_policy=RetryPolicy(max_retries=2)), now_ms=T0)
    outcomes = []
    for n in range(3):
        lease = await claim_at(scheduler, T0 + n)
        outcomes.append(await scheduler.fail(lease.lease_id, f"err {n}", retryable=True,
                                             now_ms=T0 + n))
    assert [o.will_retry for o in outcomes] == [True, True, False]
    assert outcomes[-1].retry_at_ms is None
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.error, job.attempt, job.finished_at_ms) == (
        JobStatus.FAILURE, "err 2", 2, T0 + 2)
    assert (await scheduler.claim("w", [], now_ms=T0 + 10)).claims == []
    counters = await scheduler.counters("default")
    assert (counters["retried"], counters["finished:failure"]) == (2, 1)
    assert (await assert_one_place(scheduler, "default"))[job.id] == "done"


async def test_non_retryable_failure_is_terminal_at_once(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(retry_policy=RetryPolicy(max_retries=5)), now_ms=T0)
    lease = await claim_at(scheduler, T0)
    outcome = await scheduler.fail(lease.lease_id, "bad input", now_ms=T0 + 1)
    assert not outcome.will_retry
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.error, job.attempt) == (JobStatus.FAILURE, "bad input", 0)
    assert (await scheduler.claim("w", [], now_ms=T0 + 2)).claims == []


async def test_lease_expiry_uses_an_attempt(scheduler: Scheduler) -> None:
    spec = JobSpec(lease_ttl_secs=10, retry_policy=RetryPolicy(
        max_retries=1, backoff=FixedBackoff(Fixed=FixedParams(delay_secs=1))))
    await scheduler.submit(spec, now_ms=T0)
    lease = await claim_at(scheduler, T0)
    report = await Reaper(scheduler).run_once(now_ms=T0 + 10_000)
    assert report.expired == 1
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt, job.error) == (JobStatus.QUEUED, 1, "lease_expired")
    assert job.delayed_until_ms == T0 + 11_000
    again = await claim_at(scheduler, T0 + 11_000)
    assert again.attempt == 1

    await Reaper(scheduler).run_once(now_ms=T0 + 21_000)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.error) == (JobStatus.FAILURE, "lease_expired")
    counters = await scheduler.counters("default")
    assert (counters["leases_expired"], counters["retried"]) == (2, 1)
    assert (await assert_one_place(scheduler, "default"))[job.id] == "done"


async def test_timeout_is_enforced_by_the_reaper_and_retried(scheduler: Scheduler) -> None:
    spec = JobSpec(lease_ttl_secs=4, timeout_secs=10, retry_policy=RetryPolicy(max_retries=1))
    await scheduler.submit(spec, now_ms=T0)
    lease = await claim_at(scheduler, T0)
    for t in range(3_000, 10_000, 3_000):
        await scheduler.heartbeat(lease.lease_id, now_ms=T0 + t)
    assert (await Reaper(scheduler).run_once(now_ms=T0 + 9_999)).expired == 0
    assert (await Reaper(scheduler).run_once(now_ms=T0 + 10_000)).expired == 1
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt, job.error) == (JobStatus.QUEUED, 1, "timeout")

    second = await claim_at(scheduler, T0 + 20_000)  # the budget restarts with each claim
    assert second.expires_at_ms == T0 + 24_000
    for t in (23_000, 26_000):
        await scheduler.heartbeat(second.lease_id, now_ms=T0 + t)
    await Reaper(scheduler).run_once(now_ms=T0 + 30_000)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.error) == (JobStatus.FAILURE, "timeout")


async def test_a_lapsed_lease_found_late_is_still_lease_expired_not_timeout(
    scheduler: Scheduler,
) -> None:
    """The reason is what ended the lease, not how late the reaper looked."""
    await scheduler.submit(JobSpec(lease_ttl_secs=5, timeout_secs=60), now_ms=T0)
    lease = await claim_at(scheduler, T0)
    await Reaper(scheduler).run_once(now_ms=T0 + 3_600_000)
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.error) == (JobStatus.FAILURE, "lease_expired")


async def test_a_retried_job_goes_behind_jobs_already_waiting(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(retry_policy=RetryPolicy(max_retries=1)), now_ms=T0)
    lease = await claim_at(scheduler, T0)
    waiting = (await scheduler.submit(JobSpec(), now_ms=T0 + 1)).job.id
    await scheduler.fail(lease.lease_id, "x", retryable=True, now_ms=T0 + 2)
    batch = await scheduler.claim("w", [], max_jobs=2, now_ms=T0 + 3)
    assert [c.job.id for c in batch.claims] == [waiting, lease.job_id]
