"""A finishing call retried by the lease that made it gets its first reply again, not 409."""

from __future__ import annotations

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import Finished, JobSpec, JobStatus, Lease, RetryPolicy
from tests.integration.test_queues import T0


async def _lease(scheduler: Scheduler, worker: str = "w", **fields: object) -> Lease:
    await scheduler.submit(JobSpec.model_validate({"command": "true", **fields}), now_ms=T0)
    return (await scheduler.claim(worker, [], now_ms=T0)).claims[0].lease


async def test_a_retried_complete_gets_its_first_reply(scheduler: Scheduler) -> None:
    lease = await _lease(scheduler)
    first = await scheduler.complete(lease.lease_id, "w", {"v": 1}, now_ms=T0 + 250)
    again = await scheduler.complete(lease.lease_id, "w", {"v": 2}, now_ms=T0 + 900)
    assert first == Finished(run_ms=250)
    assert again == Finished(run_ms=0, replayed=True)  # its run time was observed once
    job = await scheduler.get(lease.job_id)
    assert job.status == JobStatus.SUCCESS and job.outputs == {"v": 1}  # the retry wrote nothing
    assert (await scheduler.queue_stats("default")).counters["finished:success"] == 1


async def test_a_retried_fail_gets_its_first_reply(scheduler: Scheduler) -> None:
    policy = RetryPolicy.model_validate({"max_retries": 2, "backoff": {"Fixed": {"delay_secs": 5}}})
    lease = await _lease(scheduler, retry_policy=policy)
    first = await scheduler.fail(lease.lease_id, "flaky", "w", retryable=True, now_ms=T0 + 10)
    again = await scheduler.fail(lease.lease_id, "flaky", "w", retryable=True, now_ms=T0 + 20)
    assert first.will_retry and first.retry_at_ms == T0 + 10 + 5000 and not first.replayed
    assert again == first.model_copy(update={"replayed": True, "run_ms": 0})
    assert (await scheduler.get(lease.job_id)).attempt == 1  # one attempt used, not two

    terminal = await _lease(scheduler)
    done = await scheduler.fail(terminal.lease_id, "bad", "w", now_ms=T0 + 30)
    assert await scheduler.fail(terminal.lease_id, "bad", "w", now_ms=T0 + 40) == \
        done.model_copy(update={"replayed": True, "run_ms": 0})


async def test_a_retried_release_gets_its_first_reply_even_after_a_new_claim(
        scheduler: Scheduler) -> None:
    lease = await _lease(scheduler)
    assert await scheduler.release(lease.lease_id, "w", now_ms=T0 + 1) is False
    assert await scheduler.release(lease.lease_id, "w", now_ms=T0 + 2) is True
    newer = (await scheduler.claim("w2", [], now_ms=T0 + 3)).claims[0].lease
    assert await scheduler.release(lease.lease_id, "w", now_ms=T0 + 4) is True
    with pytest.raises(errors.LeaseSuperseded):  # only the call that was made is replayed
        await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 5)
    assert (await scheduler.get(newer.job_id)).status == JobStatus.RUNNING


async def test_only_the_same_call_by_the_same_lease_and_worker_is_replayed(
        scheduler: Scheduler) -> None:
    lease = await _lease(scheduler)
    await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 1)
    with pytest.raises(errors.JobFinished):  # another call than the one that finished it
        await scheduler.fail(lease.lease_id, "late", "w", now_ms=T0 + 2)
    with pytest.raises(errors.JobFinished):
        await scheduler.release(lease.lease_id, "w", now_ms=T0 + 2)
    with pytest.raises(errors.NotLeaseOwner):
        await scheduler.complete(lease.lease_id, "intruder", now_ms=T0 + 2)

    policy = RetryPolicy(max_retries=1)
    first = await _lease(scheduler, retry_policy=policy)
    await scheduler.fail(first.lease_id, "flaky", "w", retryable=True, now_ms=T0 + 3)
    second = (await scheduler.claim("w", [], now_ms=T0 + 4)).claims[0].lease
    await scheduler.complete(second.lease_id, "w", now_ms=T0 + 5)
    with pytest.raises(errors.LeaseSuperseded):  # a later lease finished the job since
        await scheduler.fail(first.lease_id, "flaky", "w", retryable=True, now_ms=T0 + 6)
