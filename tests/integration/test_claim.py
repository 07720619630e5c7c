"""Claiming: priority then FIFO, label routing, delayed jobs, batches and several queues."""

from __future__ import annotations

import asyncio
import random

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus
from tests.integration.test_queues import T0, assert_one_place


async def claim_ids(
    scheduler: Scheduler, labels: list[str] | None = None, max_jobs: int = 1, now_ms: int = T0,
    queues: list[str] | None = None,
) -> list[str]:
    batch = await scheduler.claim("w", labels or [], queues=queues, max_jobs=max_jobs,
                                  now_ms=now_ms)
    return [claim.job.id for claim in batch.claims]


async def drain(scheduler: Scheduler, labels: list[str] | None = None) -> list[str]:
    """Claims until the queue hands out nothing; the ids in claim order."""
    order: list[str] = []
    while ids := await claim_ids(scheduler, labels, max_jobs=100):
        order += ids
    return order


async def test_lower_priority_value_is_claimed_first(scheduler: Scheduler) -> None:
    low = (await scheduler.submit(JobSpec(priority=900), now_ms=T0)).job.id
    high = (await scheduler.submit(JobSpec(priority=0), now_ms=T0)).job.id
    mid = (await scheduler.submit(JobSpec(priority=100), now_ms=T0)).job.id
    assert await drain(scheduler) == [high, mid, low]


async def test_500_jobs_of_one_priority_come_out_in_submit_order(scheduler: Scheduler) -> None:
    ids = [r.job.id for r in await scheduler.submit_bulk([JobSpec()] * 250, now_ms=T0)]
    for _ in range(250):  # one by one too, all at the same millisecond
        ids.append((await scheduler.submit(JobSpec(), now_ms=T0)).job.id)
    assert await drain(scheduler) == ids


async def test_mixed_priorities_are_ordered_by_priority_then_submit_order(
    scheduler: Scheduler,
) -> None:
    rng = random.Random(7)
    priorities = [rng.choice([0, 1, 50, 100, 999, 1000]) for _ in range(300)]
    results = await scheduler.submit_bulk([JobSpec(priority=p) for p in priorities], now_ms=T0)
    expected = [r.job.id for _, _, r in sorted(
        zip(priorities, range(300), results, strict=True), key=lambda t: (t[0], t[1]))]
    assert await drain(scheduler) == expected


async def test_required_labels_must_be_a_subset_of_the_worker_labels(
    scheduler: Scheduler,
) -> None:
    job = (await scheduler.submit(JobSpec(required_labels=["gpu", "linux"]), now_ms=T0)).job.id
    assert await claim_ids(scheduler, ["gpu"]) == []
    assert await claim_ids(scheduler, ["linux", "arm"]) == []
    assert await claim_ids(scheduler, []) == []
    assert await claim_ids(scheduler, ["linux", "gpu", "big"]) == [job]


async def test_a_non_matching_head_never_blocks_a_matching_job_behind_it(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit_bulk(
        [JobSpec(priority=0, required_labels=["gpu"]) for _ in range(20)], now_ms=T0)
    behind = (await scheduler.submit(JobSpec(priority=1000), now_ms=T0)).job.id
    arm = (await scheduler.submit(JobSpec(priority=500, required_labels=["arm"]), now_ms=T0)).job
    assert await claim_ids(scheduler, ["arm"], max_jobs=5) == [arm.id, behind]
    assert len(await drain(scheduler, ["gpu"])) == 20


async def test_worker_with_extra_labels_claims_unlabelled_jobs(scheduler: Scheduler) -> None:
    plain = (await scheduler.submit(JobSpec(priority=5), now_ms=T0)).job.id
    gpu = (await scheduler.submit(JobSpec(priority=9, required_labels=["gpu"]), now_ms=T0)).job.id
    assert await claim_ids(scheduler, ["gpu", "linux"], max_jobs=5) == [plain, gpu]


async def test_fifo_holds_across_label_sets_of_equal_priority(scheduler: Scheduler) -> None:
    label_sets = [[], ["gpu"], ["gpu", "linux"], ["linux"]]
    specs = [JobSpec(required_labels=label_sets[n % 4]) for n in range(40)]
    ids = [(await scheduler.submit(spec, now_ms=T0)).job.id for spec in specs]
    assert await drain(scheduler, ["gpu", "linux"]) == ids


async def test_delayed_job_is_claimable_only_from_its_due_time(scheduler: Scheduler) -> None:
    job = (await scheduler.submit(JobSpec(delay_secs=5), now_ms=T0)).job.id
    early = await scheduler.claim("w", [], now_ms=T0 + 4_999)
    assert early.claims == [] and early.next_due_ms == T0 + 5_000
    assert (await assert_one_place(scheduler, "default"))[job] == "delayed"
    assert await claim_ids(scheduler, now_ms=T0 + 5_000) == [job]  # no reaper needed


async def test_run_at_job_is_claimable_only_from_run_at(scheduler: Scheduler) -> None:
    later = (await scheduler.submit(JobSpec(run_at_ms=T0 + 60_000), now_ms=T0)).job.id
    sooner = (await scheduler.submit(JobSpec(run_at_ms=T0 + 30_000), now_ms=T0)).job.id
    batch = await scheduler.claim("w", [], now_ms=T0 + 1_000)
    assert batch.claims == [] and batch.next_due_ms == T0 + 30_000
    assert await claim_ids(scheduler, max_jobs=5, now_ms=T0 + 30_000) == [sooner]
    assert await claim_ids(scheduler, max_jobs=5, now_ms=T0 + 60_001) == [later]


async def test_empty_queue_has_no_next_due_time(scheduler: Scheduler) -> None:
    batch = await scheduler.claim("w", [], now_ms=T0)
    assert batch.claims == [] and batch.next_due_ms is None


async def test_a_job_that_becomes_due_keeps_its_submit_order(
    scheduler: Scheduler,
) -> None:
    delayed = (await scheduler.submit(JobSpec(delay_secs=1), now_ms=T0)).job.id
    ready = (await scheduler.submit(JobSpec(), now_ms=T0 + 500)).job.id
    assert await claim_ids(scheduler, max_jobs=2, now_ms=T0 + 2_000) == [delayed, ready]


async def test_each_claim_gets_a_fresh_lease_id(scheduler: Scheduler) -> None:
    await scheduler.submit_bulk([JobSpec(), JobSpec()], now_ms=T0)
    batch = await scheduler.claim("w", [], max_jobs=2, now_ms=T0)
    first = batch.claims[0].lease
    await scheduler.release(first.lease_id, now_ms=T0 + 1)
    again = (await scheduler.claim("w", [], now_ms=T0 + 2)).claims[0].lease
    assert again.job_id == first.job_id
    lease_ids = {first.lease_id, batch.claims[1].lease.lease_id, again.lease_id}
    assert len(lease_ids) == 3


async def test_claim_returns_the_running_job_and_its_lease(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(lease_ttl_secs=45), now_ms=T0)
    await scheduler.submit(JobSpec(), now_ms=T0)
    batch = await scheduler.claim("w1", [], max_jobs=2, now_ms=T0 + 10)
    own, default = batch.claims
    assert own.job.status == JobStatus.RUNNING and own.job.worker_id == "w1"
    assert own.job.started_at_ms == T0 + 10
    assert (own.lease.worker_id, own.lease.attempt, own.lease.granted_at_ms) == ("w1", 0, T0 + 10)
    assert (own.lease.ttl_secs, own.lease.expires_at_ms) == (45, T0 + 45_010)
    assert (default.lease.ttl_secs, default.lease.expires_at_ms) == (30, T0 + 30_010)
    assert (await scheduler.get(own.job.id)).status == JobStatus.RUNNING

    await scheduler.submit(JobSpec(lease_ttl_secs=45), now_ms=T0)
    asked = (await scheduler.claim("w1", [], lease_ttl_secs=5, now_ms=T0 + 20)).claims[0].lease
    assert (asked.ttl_secs, asked.expires_at_ms) == (5, T0 + 5_020)


async def test_max_jobs_claims_distinct_jobs_in_priority_order(scheduler: Scheduler) -> None:
    ids = [(await scheduler.submit(JobSpec(priority=p), now_ms=T0)).job.id for p in (3, 1, 2, 0)]
    batch = await scheduler.claim("w", [], max_jobs=3, now_ms=T0)
    assert [c.job.id for c in batch.claims] == [ids[3], ids[1], ids[2]]
    assert len({c.lease.lease_id for c in batch.claims}) == 3
    assert await claim_ids(scheduler, max_jobs=3) == [ids[0]]


async def test_max_jobs_must_be_between_1_and_100(scheduler: Scheduler) -> None:
    for bad in (0, 101):
        with pytest.raises(errors.InvalidArgument):
            await scheduler.claim("w", [], max_jobs=bad, now_ms=T0)


async def test_claim_tries_queues_in_the_given_order(scheduler: Scheduler) -> None:
    a = [(await scheduler.submit(JobSpec(queue="a", priority=500), now_ms=T0)).job.id
         for _ in range(2)]
    b = [(await scheduler.submit(JobSpec(queue="b", priority=0), now_ms=T0)).job.id
         for _ in range(2)]
    assert await claim_ids(scheduler, max_jobs=3, queues=["a", "b"]) == [*a, b[0]]
    assert await claim_ids(scheduler, max_jobs=3, queues=["a", "b"]) == [b[1]]
    assert await claim_ids(scheduler, max_jobs=3, queues=["a", "b"]) == []


async def test_claim_defaults_to_the_default_queue(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(queue="other"), now_ms=T0)
    job = (await scheduler.submit(JobSpec(), now_ms=T0)).job.id
    assert await claim_ids(scheduler, max_jobs=5) == [job]


async def test_next_due_is_the_earliest_over_all_queues(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(queue="a", delay_secs=9), now_ms=T0)
    await scheduler.submit(JobSpec(queue="b", delay_secs=4), now_ms=T0)
    batch = await scheduler.claim("w", [], queues=["a", "b"], now_ms=T0)
    assert batch.next_due_ms == T0 + 4_000


# -- the label-set index holds only sets with ready jobs -----------------------------------------


async def test_ten_thousand_cancelled_label_sets_leave_no_trace_and_claims_still_work(
    scheduler: Scheduler,
) -> None:
    ids: list[str] = []
    for start in range(0, 10_000, 1_000):
        specs = [JobSpec(required_labels=[f"pr-{n}"]) for n in range(start, start + 1_000)]
        ids += [r.job.id for r in await scheduler.submit_bulk(specs, now_ms=T0)]
    labelsets = scheduler.queue_keys("default").labelsets
    assert await scheduler.redis.hlen(labelsets) == 10_000
    for start in range(0, len(ids), 50):
        await asyncio.gather(*(scheduler.cancel(job_id, now_ms=T0 + 1)
                               for job_id in ids[start:start + 50]))
    assert await scheduler.redis.hlen(labelsets) == 0

    fresh = (await scheduler.submit(JobSpec(required_labels=["pr-7"]), now_ms=T0 + 2)).job.id
    assert await claim_ids(scheduler, ["pr-7"], now_ms=T0 + 3) == [fresh]
    assert await scheduler.redis.hlen(labelsets) == 0


async def test_a_cancelled_workflow_run_leaves_no_label_set(scheduler: Scheduler) -> None:
    from tests.integration.test_workflows import create, node

    workflows, wf = await create(scheduler, node("a", required_labels=["gpu"]),
                                 node("b", "a", required_labels=["cpu"]))
    await workflows.run(wf)
    labelsets = scheduler.queue_keys("default").labelsets
    assert await scheduler.redis.hlen(labelsets) == 1
    await workflows.cancel(wf)
    assert await scheduler.redis.hlen(labelsets) == 0


async def test_a_claim_that_takes_the_last_job_of_a_set_forgets_the_set(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit(JobSpec(required_labels=["gpu"]), now_ms=T0)
    kept = (await scheduler.submit(JobSpec(required_labels=["arm"]), now_ms=T0)).job.id
    assert len(await claim_ids(scheduler, ["gpu"])) == 1
    labelsets = scheduler.queue_keys("default").labelsets
    assert set(await scheduler.redis.hkeys(labelsets)) == {
        (await scheduler.raw_record(kept))["lsid"]}
    assert await claim_ids(scheduler, ["arm"]) == [kept]
    assert await scheduler.redis.hlen(labelsets) == 0
