"""The reaper: lapsed leases back to the queue, due jobs promoted, old results purged."""

from __future__ import annotations

import asyncio

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus, RetryPolicy
from leasehold.scheduler.reaper import Reaper
from tests.integration.test_queues import T0, assert_one_place, job_places

RETRY = RetryPolicy(max_retries=3)


async def test_a_lapsed_lease_makes_the_job_claimable_again(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=10, retry_policy=RETRY), now_ms=T0)
    lease = (await scheduler.claim("dead", [], now_ms=T0)).claims[0].lease
    reaper = Reaper(scheduler)
    assert (await reaper.run_once(now_ms=T0 + 9_999)).expired == 0
    assert (await assert_one_place(scheduler, "default"))[lease.job_id] == "leases"

    assert (await reaper.run_once(now_ms=T0 + 10_000)).expired == 1
    assert (await assert_one_place(scheduler, "default"))[lease.job_id].startswith("ready:")
    batch = await scheduler.claim("alive", [], now_ms=T0 + 10_001)
    again = batch.claims[0].lease
    assert (again.job_id, again.attempt, again.worker_id) == (lease.job_id, 1, "alive")
    assert again.lease_id != lease.lease_id


async def test_a_second_pass_changes_nothing(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=10, retry_policy=RETRY), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    reaper = Reaper(scheduler)
    await reaper.run_once(now_ms=T0 + 10_000)
    report = await reaper.run_once(now_ms=T0 + 10_000)
    assert (report.expired, report.promoted, report.purged) == (0, 0, 0)
    assert (await scheduler.get(lease.job_id)).attempt == 1
    assert (await scheduler.counters("default"))["leases_expired"] == 1


async def test_a_heartbeat_keeps_the_reaper_away(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=10), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    await scheduler.heartbeat(lease.lease_id, now_ms=T0 + 9_000)
    assert (await Reaper(scheduler).run_once(now_ms=T0 + 18_999)).expired == 0
    await scheduler.complete(lease.lease_id, now_ms=T0 + 18_999)
    assert (await scheduler.get(lease.job_id)).status == JobStatus.SUCCESS


async def test_the_reaper_promotes_due_delayed_jobs(scheduler: Scheduler) -> None:
    soon = (await scheduler.submit(JobSpec(delay_secs=5), now_ms=T0)).job.id
    late = (await scheduler.submit(JobSpec(delay_secs=50), now_ms=T0)).job.id
    report = await Reaper(scheduler).run_once(now_ms=T0 + 5_000)
    assert report.promoted == 1
    places = await assert_one_place(scheduler, "default")
    assert places[soon].startswith("ready:") and places[late] == "delayed"
    assert (await scheduler.queue_stats("default")).ready == 1


async def test_the_reaper_covers_every_queue_and_more_than_one_batch(
    scheduler: Scheduler,
) -> None:
    small = Scheduler(scheduler.redis, scheduler.settings.model_copy(update={"reap_batch": 7}))
    await small.start()
    for queue in ("a", "b"):
        await small.submit_bulk([JobSpec(queue=queue, lease_ttl_secs=1)] * 30, now_ms=T0)
        await small.claim("w", [], queues=[queue], max_jobs=30, now_ms=T0)
    report = await Reaper(small).run_once(now_ms=T0 + 1_000)
    assert report.expired == 60
    for queue in ("a", "b"):
        stats = await small.queue_stats(queue)
        assert (stats.running, stats.failure) == (0, 30)
        await assert_one_place(small, queue)


@pytest.mark.parametrize("outcome", ["success", "failure", "cancelled"])
async def test_a_finished_job_is_purged_after_its_result_ttl_and_not_before(
    scheduler: Scheduler, outcome: str
) -> None:
    await scheduler.submit(JobSpec(result_ttl_secs=60), now_ms=T0)
    lease = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease
    if outcome == "success":
        await scheduler.complete(lease.lease_id, now_ms=T0 + 1_000)
    elif outcome == "failure":
        await scheduler.fail(lease.lease_id, "x", now_ms=T0 + 1_000)
    else:
        await scheduler.cancel(lease.job_id, now_ms=T0 + 1_000)
    reaper = Reaper(scheduler)
    assert (await reaper.run_once(now_ms=T0 + 60_999)).purged == 0
    assert (await scheduler.get(lease.job_id)).status == outcome

    assert (await reaper.run_once(now_ms=T0 + 61_000)).purged == 1
    with pytest.raises(errors.JobNotFound):
        await scheduler.get(lease.job_id)
    assert await job_places(scheduler, "default") == {}
    stats = await scheduler.queue_stats("default")
    assert (stats.success, stats.failure, stats.cancelled) == (0, 0, 0)
    assert (await scheduler.counters("default"))[f"finished:{outcome}"] == 1


async def test_result_ttl_defaults_to_the_settings(scheduler: Scheduler) -> None:
    short = Scheduler(scheduler.redis, scheduler.settings.model_copy(
        update={"result_ttl_secs": 30}))
    await short.start()
    await short.submit(JobSpec(), now_ms=T0)
    lease = (await short.claim("w", [], now_ms=T0)).claims[0].lease
    await short.complete(lease.lease_id, now_ms=T0)
    await Reaper(short).run_once(now_ms=T0 + 29_999)
    assert (await short.get(lease.job_id)).status == JobStatus.SUCCESS
    await Reaper(short).run_once(now_ms=T0 + 30_000)
    with pytest.raises(errors.JobNotFound):
        await short.get(lease.job_id)


async def test_queued_and_running_jobs_are_never_purged(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(result_ttl_secs=1, lease_ttl_secs=86_400), now_ms=T0)
    running = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease.job_id
    queued = (await scheduler.submit(JobSpec(result_ttl_secs=1), now_ms=T0)).job.id
    await Reaper(scheduler).run_once(now_ms=T0 + 3_600_000)
    assert (await scheduler.get(queued)).status == JobStatus.QUEUED
    assert (await scheduler.get(running)).status == JobStatus.RUNNING


async def test_an_operator_retry_cancels_the_pending_purge(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(result_ttl_secs=10), now_ms=T0)).job.id
    await scheduler.cancel(job, now_ms=T0)
    await scheduler.retry(job, now_ms=T0 + 1)
    await Reaper(scheduler).run_once(now_ms=T0 + 60_000)
    assert (await scheduler.get(job)).status == JobStatus.QUEUED


# -- a pass visits only the queues with work due -------------------------------------------------


async def test_after_the_first_sweep_a_pass_visits_only_queues_with_due_work(
    scheduler: Scheduler,
) -> None:
    for n in range(30):
        await scheduler.submit(JobSpec(queue=f"idle-{n}"), now_ms=T0)  # ready: nothing to reap
    await scheduler.submit(JobSpec(queue="hot", lease_ttl_secs=10, retry_policy=RETRY), now_ms=T0)
    await scheduler.claim("dead", [], queues=["hot"], now_ms=T0)
    reaper = Reaper(scheduler)
    await reaper.run_once(now_ms=T0 + 1)
    assert reaper.visited == 31  # the first pass sweeps every indexed queue

    assert (await reaper.run_once(now_ms=T0 + 9_999)).expired == 0
    assert reaper.visited == 0
    assert (await reaper.run_once(now_ms=T0 + 10_000)).expired == 1
    assert reaper.visited == 1


async def test_a_deadline_set_after_the_sweep_reaches_a_running_reaper(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("leasehold.scheduler.reaper.SWEEP_SECS", 3600.0)  # only messages help
    reaper = Reaper(scheduler, interval_secs=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(reaper.run_forever(stop))
    try:
        for _ in range(100):  # the start-up sweep ran, so later work is known by message only
            if reaper._swept:
                break
            await asyncio.sleep(0.05)
        job = (await scheduler.submit(JobSpec(queue="new", lease_ttl_secs=1,
                                              retry_policy=RETRY))).job.id
        await scheduler.claim("dead", [], queues=["new"], lease_ttl_secs=0.2)
        for _ in range(100):
            if (await scheduler.get(job)).status == JobStatus.QUEUED:
                break
            await asyncio.sleep(0.05)
        assert (await scheduler.get(job)).attempt == 1  # expired and back in the queue
    finally:
        stop.set()
        await task


async def test_reapers_racing_on_one_queue_expire_each_lease_once(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit_bulk([JobSpec(queue="hot", lease_ttl_secs=1, retry_policy=RETRY)] * 20,
                                now_ms=T0)
    await scheduler.claim("dead", [], queues=["hot"], max_jobs=20, now_ms=T0)
    reapers = [Reaper(scheduler) for _ in range(3)]
    reports = await asyncio.gather(*(r.run_once(now_ms=T0 + 1_000) for r in reapers))
    assert sum(report.expired for report in reports) == 20
    assert (await scheduler.queue_stats("hot")).ready == 20
    await assert_one_place(scheduler, "hot")
