"""Submitting jobs: what is stored, dedup by ``unique_key``, and atomic bulk requests."""

from __future__ import annotations

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import new_job_id
from leasehold.scheduler.models import (
    ExponentialBackoff,
    ExponentialParams,
    JobSpec,
    JobStatus,
    RetryPolicy,
)
from leasehold.scheduler.rawjson import decoded
from leasehold.scheduler.scripts import raise_for
from tests.integration.test_queues import T0, assert_one_place


async def test_submit_stores_a_queued_job_that_reads_back_the_same(scheduler: Scheduler) -> None:
    policy = RetryPolicy(
        max_retries=3,
        backoff=ExponentialBackoff(Exponential=ExponentialParams(base_secs=2, max_secs=60)),
        jitter=0.5,
    )
    spec = JobSpec(queue="builds", command="make test", payload={"n": [1, 2]},
                   required_labels=["linux", "gpu"], priority=7, retry_policy=policy,
                   lease_ttl_secs=12, timeout_secs=300, metadata={"team": "core"})
    submitted = await scheduler.submit(spec, now_ms=T0)
    job = submitted.job
    assert not submitted.deduplicated
    assert job.id.startswith("builds.") and job.job_id == job.id and job.workflow_id is None
    assert (job.status, job.attempt, job.enqueued_at_ms, job.delayed_until_ms) == (
        JobStatus.QUEUED, 0, T0, 0)
    assert (job.queue, job.command, decoded(job.payload), job.priority) == (
        "builds", "make test", {"n": [1, 2]}, 7)
    assert sorted(job.required_labels) == ["gpu", "linux"]
    assert job.retry_policy == policy
    assert (job.lease_ttl_secs, job.timeout_secs, job.metadata.value) == (12, 300, {"team": "core"})
    assert await scheduler.get(job.id) == job


async def test_defaults_of_a_bare_submit(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(), now_ms=T0)).job
    assert (job.queue, job.priority, job.required_labels, job.retry_policy) == (
        "default", 100, [], RetryPolicy())
    assert (job.command, job.payload, job.outputs, job.error) == (None, None, None, None)


async def test_job_ids_are_unique_and_unknown_ids_are_not_found(scheduler: Scheduler) -> None:
    ids = {(await scheduler.submit(JobSpec(), now_ms=T0)).job.id for _ in range(50)}
    assert len(ids) == 50
    with pytest.raises(errors.JobNotFound):
        await scheduler.get("default.AAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(errors.JobNotFound):
        await scheduler.get("not an id")


async def test_delayed_submits_report_when_they_become_due(scheduler: Scheduler) -> None:
    by_delay = (await scheduler.submit(JobSpec(delay_secs=2.5), now_ms=T0)).job
    by_time = (await scheduler.submit(JobSpec(run_at_ms=T0 + 7_000), now_ms=T0)).job
    past = (await scheduler.submit(JobSpec(run_at_ms=T0 - 1), now_ms=T0)).job
    assert by_delay.delayed_until_ms == T0 + 2_500
    assert (await scheduler.get(by_time.id)).delayed_until_ms == T0 + 7_000
    assert past.delayed_until_ms == 0
    places = await assert_one_place(scheduler, "default")
    assert (places[by_delay.id], places[by_time.id]) == ("delayed", "delayed")
    assert places[past.id].startswith("ready:")


async def test_same_unique_key_returns_the_live_job(scheduler: Scheduler) -> None:
    first = await scheduler.submit(JobSpec(unique_key="nightly", command="a"), now_ms=T0)
    second = await scheduler.submit(JobSpec(unique_key="nightly", command="b"), now_ms=T0 + 1)
    assert second.deduplicated
    assert second.job.id == first.job.id and second.job.command == "a"

    # still deduplicated while it runs
    lease = (await scheduler.claim("w", [], now_ms=T0 + 2)).claims[0].lease
    third = await scheduler.submit(JobSpec(unique_key="nightly"), now_ms=T0 + 3)
    assert third.deduplicated and third.job.status == JobStatus.RUNNING
    assert third.job.id == first.job.id
    await scheduler.complete(lease.lease_id, now_ms=T0 + 4)
    assert (await scheduler.counters("default"))["submitted"] == 1


async def test_unique_key_is_free_again_once_the_job_finishes(scheduler: Scheduler) -> None:
    first = await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    await scheduler.complete(lease.lease_id, now_ms=T0 + 1)
    again = await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0 + 2)
    assert not again.deduplicated
    assert again.job.id != first.job.id and again.job.status == JobStatus.QUEUED


async def test_cancelled_job_frees_its_unique_key(scheduler: Scheduler) -> None:
    first = await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0)
    await scheduler.cancel(first.job.id, now_ms=T0 + 1)
    again = await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0 + 2)
    assert not again.deduplicated


async def test_unique_ttl_keeps_deduplicating_after_the_job_finishes(
    scheduler: Scheduler,
) -> None:
    spec = JobSpec(unique_key="k", unique_ttl_secs=3600)
    first = await scheduler.submit(spec, now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    await scheduler.complete(lease.lease_id, outputs={"ok": True}, now_ms=T0 + 1)
    again = await scheduler.submit(spec, now_ms=T0 + 2)
    assert again.deduplicated
    assert again.job.id == first.job.id
    assert (again.job.status, decoded(again.job.outputs)) == (JobStatus.SUCCESS, {"ok": True})


async def test_unique_keys_are_per_queue(scheduler: Scheduler) -> None:
    a = await scheduler.submit(JobSpec(queue="a", unique_key="k"), now_ms=T0)
    b = await scheduler.submit(JobSpec(queue="b", unique_key="k"), now_ms=T0)
    assert not b.deduplicated and a.job.id != b.job.id


async def test_bulk_returns_jobs_in_request_order_and_dedups_inside_it(
    scheduler: Scheduler,
) -> None:
    specs = [JobSpec(command="one", unique_key="x"), JobSpec(command="two"),
             JobSpec(command="three", unique_key="x"), JobSpec(command="four", unique_key="y")]
    results = await scheduler.submit_bulk(specs, now_ms=T0)
    assert [r.deduplicated for r in results] == [False, False, True, False]
    assert [r.job.command for r in results] == ["one", "two", "one", "four"]
    assert results[2].job.id == results[0].job.id
    assert (await scheduler.queue_stats("default")).ready == 3
    assert (await scheduler.counters("default"))["submitted"] == 3


async def test_bulk_with_mixed_queues_is_refused_and_stores_nothing(
    scheduler: Scheduler,
) -> None:
    with pytest.raises(errors.InvalidArgument):
        await scheduler.submit_bulk([JobSpec(queue="a"), JobSpec(queue="b")], now_ms=T0)
    for queue in ("a", "b"):
        assert (await scheduler.queue_stats(queue)).ready == 0
        assert (await scheduler.counters(queue)).get("submitted", 0) == 0


async def test_bulk_of_more_than_1000_is_refused_and_1000_is_accepted(
    scheduler: Scheduler,
) -> None:
    with pytest.raises(errors.InvalidArgument):
        await scheduler.submit_bulk([JobSpec()] * 1001, now_ms=T0)
    assert (await scheduler.queue_stats("default")).ready == 0
    results = await scheduler.submit_bulk([JobSpec()] * 1000, now_ms=T0)
    assert len({r.job.id for r in results}) == 1000
    assert (await scheduler.queue_stats("default")).ready == 1000


async def test_empty_bulk_is_a_no_op(scheduler: Scheduler) -> None:
    assert await scheduler.submit_bulk([], now_ms=T0) == []


async def test_enqueue_writes_all_jobs_or_none(scheduler: Scheduler) -> None:
    """A bulk request whose last job clashes with a stored id leaves no trace of the others."""
    taken = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    fresh = [scheduler._encode(JobSpec(command=str(n)), new_job_id("default")) for n in range(3)]
    clash = scheduler._encode(JobSpec(), taken)
    reply = await scheduler.scripts.enqueue(scheduler.queue_keys("default"), [*fresh, clash], T0)
    with pytest.raises(errors.JobAlreadyExists):
        raise_for(reply)
    for job_args in fresh:
        with pytest.raises(errors.JobNotFound):
            await scheduler.get(job_args[0])
    assert (await scheduler.queue_stats("default")).ready == 1
    assert (await scheduler.counters("default"))["submitted"] == 1
