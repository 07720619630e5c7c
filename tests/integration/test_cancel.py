"""Cancelling jobs in each state, and the operator's retry of failed or cancelled jobs."""

from __future__ import annotations

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus, RetryPolicy
from tests.integration.test_queues import T0, assert_one_place


async def test_cancel_a_queued_job_so_no_one_claims_it(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    other = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    assert await scheduler.cancel(job, now_ms=T0 + 1) == JobStatus.QUEUED
    cancelled = await scheduler.get(job)
    assert (cancelled.status, cancelled.finished_at_ms) == (JobStatus.CANCELLED, T0 + 1)
    assert (await assert_one_place(scheduler, "default"))[job] == "done"
    batch = await scheduler.claim("w", [], max_jobs=5, now_ms=T0 + 2)
    assert [c.job.id for c in batch.claims] == [other]


async def test_cancel_a_delayed_job_so_it_never_becomes_due(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(delay_secs=10), now_ms=T0)).job.id
    assert await scheduler.cancel(job, now_ms=T0 + 1) == JobStatus.QUEUED
    batch = await scheduler.claim("w", [], now_ms=T0 + 60_000)
    assert batch.claims == [] and batch.next_due_ms is None
    assert (await assert_one_place(scheduler, "default"))[job] == "done"


async def test_cancel_a_job_waiting_out_its_retry_backoff(scheduler: Scheduler) -> None:
    spec = JobSpec(retry_policy=RetryPolicy.model_validate(
        {"max_retries": 3, "backoff": {"Fixed": {"delay_secs": 5}}}))
    await scheduler.submit(spec, now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    await scheduler.fail(lease.lease_id, "x", retryable=True, now_ms=T0 + 1)
    assert await scheduler.cancel(lease.job_id, now_ms=T0 + 2) == JobStatus.QUEUED
    assert (await scheduler.claim("w", [], now_ms=T0 + 10_000)).claims == []


async def test_cancel_a_running_job_tells_its_worker(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    assert await scheduler.cancel(lease.job_id, now_ms=T0 + 1) == JobStatus.RUNNING
    assert (await scheduler.get(lease.job_id)).status == JobStatus.CANCELLED
    assert (await assert_one_place(scheduler, "default"))[lease.job_id] == "done"
    assert (await scheduler.heartbeat(lease.lease_id, "w", now_ms=T0 + 2)).cancelled
    with pytest.raises(errors.JobCancelled):
        await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 3)
    assert (await scheduler.queue_stats("default")).running == 0
    counters = await scheduler.counters("default")
    assert counters["finished:cancelled"] == 1 and "finished:success" not in counters


@pytest.mark.parametrize("outcome", ["complete", "fail", "cancel"])
async def test_cancel_of_a_finished_job_is_refused(scheduler: Scheduler, outcome: str) -> None:
    await scheduler.submit(JobSpec(), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    if outcome == "complete":
        await scheduler.complete(lease.lease_id, now_ms=T0 + 1)
    elif outcome == "fail":
        await scheduler.fail(lease.lease_id, "x", now_ms=T0 + 1)
    else:
        await scheduler.cancel(lease.job_id, now_ms=T0 + 1)
    before = await scheduler.get(lease.job_id)
    with pytest.raises(errors.JobFinished):
        await scheduler.cancel(lease.job_id, now_ms=T0 + 2)
    assert await scheduler.get(lease.job_id) == before


async def test_cancel_of_an_unknown_job_is_not_found(scheduler: Scheduler) -> None:
    for job_id in ("default.AAAAAAAAAAAAAAAAAAAAAA", "nonsense"):
        with pytest.raises(errors.JobNotFound):
            await scheduler.cancel(job_id, now_ms=T0)


async def test_operator_retry_of_a_failed_job_gives_a_fresh_budget(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(retry_policy=RetryPolicy(max_retries=1)), now_ms=T0)
    for n in range(2):
        lease = (await scheduler.claim("w", [], now_ms=T0 + n)).claims[0].lease
        await scheduler.fail(lease.lease_id, "boom", retryable=True, now_ms=T0 + n)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.FAILURE

    assert await scheduler.retry(lease.job_id, now_ms=T0 + 10) == JobStatus.FAILURE
    job = await scheduler.get(lease.job_id)
    assert (job.status, job.attempt, job.error, job.finished_at_ms) == (
        JobStatus.QUEUED, 0, None, None)
    assert (await assert_one_place(scheduler, "default"))[job.id].startswith("ready:")
    again = (await scheduler.claim("w", [], now_ms=T0 + 11)).claims[0].lease
    assert (again.job_id, again.attempt) == (job.id, 0)
    outcome = await scheduler.fail(again.lease_id, "boom", retryable=True, now_ms=T0 + 12)
    assert outcome.will_retry  # the retry budget is whole again
    stats = await scheduler.queue_stats("default")
    assert stats.failure == 0 and stats.ready == 1


async def test_operator_retry_of_a_cancelled_job_requeues_it(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(unique_key="u"), now_ms=T0)).job.id
    await scheduler.cancel(job, now_ms=T0 + 1)
    assert await scheduler.retry(job, now_ms=T0 + 2) == JobStatus.CANCELLED
    assert (await scheduler.get(job)).status == JobStatus.QUEUED
    dup = await scheduler.submit(JobSpec(unique_key="u"), now_ms=T0 + 3)
    assert dup.deduplicated and dup.job.id == job  # it holds its unique key again
    batch = await scheduler.claim("w", [], now_ms=T0 + 3)
    assert [c.job.id for c in batch.claims] == [job]


@pytest.mark.parametrize("state", ["queued", "running", "success"])
async def test_operator_retry_of_other_states_is_invalid(scheduler: Scheduler, state: str) -> None:
    job = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    if state != "queued":
        lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
        if state == "success":
            await scheduler.complete(lease.lease_id, now_ms=T0 + 1)
    before = await scheduler.get(job)
    with pytest.raises(errors.InvalidState):
        await scheduler.retry(job, now_ms=T0 + 2)
    assert await scheduler.get(job) == before


async def test_operator_retry_of_an_unknown_job_is_not_found(scheduler: Scheduler) -> None:
    with pytest.raises(errors.JobNotFound):
        await scheduler.retry("default.AAAAAAAAAAAAAAAAAAAAAA", now_ms=T0)
