"""``Scheduler.complete_many``: one complete script per lease, all in one round trip."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import Finished, JobSpec, JobStatus


async def _leases(scheduler: Scheduler, worker: str, count: int, queue: str = "default"
                  ) -> list[str]:
    """Lease ids in claim order, which is submit order."""
    await scheduler.submit_bulk([JobSpec(queue=queue, command="true") for _ in range(count)])
    batch = await scheduler.claim(worker, [], queues=[queue], max_jobs=count)
    assert len(batch.claims) == count
    return [claim.lease.lease_id for claim in batch.claims]


@pytest.mark.parametrize("cluster", [False, True], ids=["pipeline", "one-call-each"])
async def test_each_lease_is_completed_or_refused_on_its_own(
        redis: Redis, settings: Settings, cluster: bool) -> None:
    scheduler = Scheduler(redis, settings.model_copy(update={"redis_cluster": cluster}))
    await scheduler.start()
    first, second, done = await _leases(scheduler, "w", 3)
    other = (await _leases(scheduler, "other", 1, queue="q2"))[0]
    await scheduler.complete(done, "w")
    found = await scheduler.complete_many(
        [(first, {"n": 1}), ("garbage", None), (done, None), (second, None), (other, None)], "w")
    assert isinstance(found[first], Finished) and isinstance(found[second], Finished)
    assert isinstance(found["garbage"], errors.LeaseNotFound)
    replayed = found[done]
    assert isinstance(replayed, Finished) and replayed.replayed  # its first reply, again
    assert isinstance(found[other], errors.NotLeaseOwner)
    jobs, _ = await scheduler.list_jobs("default")
    assert [job.status for job in jobs] == [JobStatus.SUCCESS] * 3
    assert jobs[0].outputs == {"n": 1}
    assert (await scheduler.queue_stats("default")).success == 3
    assert (await scheduler.queue_stats("q2")).running == 1


async def test_a_flushed_script_cache_is_reloaded(redis: Redis, scheduler: Scheduler) -> None:
    leases = await _leases(scheduler, "w", 3)
    await redis.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    found = await scheduler.complete_many([(lease, None) for lease in leases], "w")
    assert all(isinstance(done, Finished) and not done.replayed for done in found.values())
    assert (await scheduler.queue_stats("default")).success == 3
