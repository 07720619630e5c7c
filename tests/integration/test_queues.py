"""Queue controls (pause, max_running, rate limit), counters, events, the one-place invariant."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus, QueueLimits, RateLimit, RetryPolicy
from leasehold.scheduler.reaper import Reaper

T0 = 1_700_000_000_000
_PLACE_STATUS = {"delayed": "queued", "leases": "running"}


async def job_places(scheduler: Scheduler, queue: str) -> dict[str, list[str]]:
    """Where each job of ``queue`` sits in the raw keys: ready:<lsid>, delayed, leases, done."""
    q = scheduler.queue_keys(queue)
    redis = scheduler.redis
    places: dict[str, list[str]] = {
        job_id: [] for job_id in cast(list[str], await redis.zrange(q.index, 0, -1))
    }
    async for key in redis.scan_iter(match=q.ready("*"), count=1000):
        lsid = cast(str, key).rsplit("ready:", 1)[1]
        for member in cast(list[str], await redis.zrange(cast(str, key), 0, -1)):
            places.setdefault(member.split("|", 1)[1], []).append(f"ready:{lsid}")
    for name, key in (("delayed", q.delayed), ("leases", q.leases), ("done", q.done)):
        for job_id in cast(list[str], await redis.zrange(key, 0, -1)):
            places.setdefault(job_id, []).append(name)
    return places


async def assert_one_place(scheduler: Scheduler, queue: str) -> dict[str, str]:
    """Checks each job is in exactly one place, which agrees with its status; returns the places."""
    found: dict[str, str] = {}
    for job_id, where in (await job_places(scheduler, queue)).items():
        record = await scheduler.raw_record(job_id)
        assert record, f"{job_id} is in {where} but has no record"
        if not where and record.get("waiting_deps") == "1":
            where = ["waiting"]  # a workflow job waiting on its dependencies is in no set
        assert len(where) == 1, f"{job_id} is in {where}"
        place = where[0]
        status = JobStatus(record["status"])
        if place == "done":
            assert status.terminal, f"{job_id} is in done but {status}"
        else:
            assert status == _PLACE_STATUS.get(place, "queued"), f"{job_id}: {place} but {status}"
        found[job_id] = place
    return found


async def submit_n(scheduler: Scheduler, n: int, **fields: Any) -> list[str]:
    """Submits ``n`` jobs of one spec (JobSpec fields) at T0; their ids in submit order."""
    spec = JobSpec.model_validate(fields)
    return [(await scheduler.submit(spec, now_ms=T0)).job.id for _ in range(n)]


async def test_paused_queue_hands_out_nothing_until_resumed(scheduler: Scheduler) -> None:
    [job_id] = await submit_n(scheduler, 1)
    stats = await scheduler.set_queue("default", QueueLimits(paused=True))
    assert stats.paused
    assert (await scheduler.claim("w", [], now_ms=T0)).claims == []
    assert (await scheduler.get(job_id)).status == JobStatus.QUEUED

    assert not (await scheduler.set_queue("default", QueueLimits(paused=False))).paused
    batch = await scheduler.claim("w", [], now_ms=T0)
    assert [c.job.id for c in batch.claims] == [job_id]


async def test_pausing_one_queue_leaves_the_others_working(scheduler: Scheduler) -> None:
    await submit_n(scheduler, 1, queue="a")
    [b] = await submit_n(scheduler, 1, queue="b")
    await scheduler.set_queue("a", QueueLimits(paused=True))
    batch = await scheduler.claim("w", [], queues=["a", "b"], max_jobs=2, now_ms=T0)
    assert [c.job.id for c in batch.claims] == [b]


async def test_max_running_caps_leases_held_at_once(scheduler: Scheduler) -> None:
    await submit_n(scheduler, 5)
    await scheduler.set_queue("default", QueueLimits(max_running=2))
    first = await scheduler.claim("w1", [], max_jobs=5, now_ms=T0)
    assert len(first.claims) == 2
    assert (await scheduler.claim("w2", [], now_ms=T0)).claims == []

    await scheduler.complete(first.claims[0].lease.lease_id, now_ms=T0 + 1)
    again = await scheduler.claim("w2", [], max_jobs=5, now_ms=T0 + 2)
    assert len(again.claims) == 1
    assert (await scheduler.queue_stats("default")).running == 2


async def test_rate_limit_caps_claims_per_window_then_allows_more(scheduler: Scheduler) -> None:
    await submit_n(scheduler, 5)
    await scheduler.set_queue("default", QueueLimits(rate_limit=RateLimit(limit=2, per_secs=10)))
    first = await scheduler.claim("w", [], max_jobs=5, now_ms=T0)
    assert len(first.claims) == 2
    limited = await scheduler.claim("w", [], now_ms=T0 + 9_999)
    assert limited.claims == []
    assert limited.next_due_ms == T0 + 10_000

    later = await scheduler.claim("w", [], max_jobs=5, now_ms=T0 + 10_000)
    assert len(later.claims) == 2


async def test_rate_limit_zero_removes_the_limit(scheduler: Scheduler) -> None:
    await submit_n(scheduler, 3)
    await scheduler.set_queue("default", QueueLimits(rate_limit=RateLimit(limit=1, per_secs=60)))
    assert len((await scheduler.claim("w", [], max_jobs=3, now_ms=T0)).claims) == 1
    await scheduler.set_queue("default", QueueLimits(rate_limit=RateLimit(limit=0, per_secs=60)))
    assert len((await scheduler.claim("w", [], max_jobs=3, now_ms=T0 + 1)).claims) == 2


async def test_queue_stats_count_each_place(scheduler: Scheduler) -> None:
    await submit_n(scheduler, 3)
    await submit_n(scheduler, 2, delay_secs=60)
    batch = await scheduler.claim("w", [], max_jobs=2, now_ms=T0 + 1_000)
    await scheduler.fail(batch.claims[0].lease.lease_id, "boom", now_ms=T0 + 2_000)
    stats = await scheduler.queue_stats("default", now_ms=T0 + 5_000)
    assert (stats.ready, stats.scheduled, stats.running, stats.failure) == (1, 2, 1, 1)
    assert stats.oldest_ready_age_secs == 5.0
    assert "default" in await scheduler.queues()


async def test_counters_after_a_scenario(scheduler: Scheduler) -> None:
    retry = {"retry_policy": RetryPolicy(max_retries=1), "lease_ttl_secs": 10}
    ok, flaky, doomed, dropped = await submit_n(scheduler, 4, **retry)
    await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0)
    await scheduler.submit(JobSpec(unique_key="k"), now_ms=T0)  # deduplicated: not counted
    claims = {c.job.id: c.lease.lease_id
              for c in (await scheduler.claim("w", [], max_jobs=3, now_ms=T0)).claims}
    await scheduler.complete(claims[ok], now_ms=T0 + 1)
    await scheduler.fail(claims[flaky], "again", retryable=True, now_ms=T0 + 1)
    await scheduler.fail(claims[doomed], "no", now_ms=T0 + 1)
    await scheduler.cancel(dropped, now_ms=T0 + 1)
    # the flaky job and the unique one are ready again; both leases then lapse
    batch = await scheduler.claim("w", [], max_jobs=2, now_ms=T0 + 2)
    assert flaky in {c.job.id for c in batch.claims}
    await Reaper(scheduler).run_once(now_ms=T0 + 60_000)

    counters = await scheduler.counters("default")
    assert counters["submitted"] == 5
    assert counters["claimed"] == 5
    assert counters["retried"] == 1  # the flaky job's fail; its expiry exhausts its budget
    assert counters["leases_expired"] == 2
    assert counters["finished:success"] == 1
    assert counters["finished:failure"] == 3  # doomed, flaky (expired), unique one (no retries)
    assert counters["finished:cancelled"] == 1
    places = await assert_one_place(scheduler, "default")
    assert sorted(places.values()) == ["done"] * 5
    arrivals = Counter(e["to"] for e in await scheduler.events("default"))
    assert arrivals == {"queued": 6, "running": 5, "success": 1, "failure": 3, "cancelled": 1}


async def test_events_record_each_transition_in_order(scheduler: Scheduler) -> None:
    [job_id] = await submit_n(scheduler, 1, retry_policy=RetryPolicy(max_retries=1))
    first = (await scheduler.claim("w", [], now_ms=T0)).claims[0].lease.lease_id
    await scheduler.fail(first, "flaky", retryable=True, now_ms=T0 + 1)
    second = (await scheduler.claim("w", [], now_ms=T0 + 2)).claims[0].lease.lease_id
    await scheduler.release(second, now_ms=T0 + 3)
    third = (await scheduler.claim("w", [], now_ms=T0 + 4)).claims[0].lease.lease_id
    await scheduler.complete(third, now_ms=T0 + 5)

    events = [e for e in await scheduler.events("default") if e["job"] == job_id]
    seen = [(e["from"], e["to"], e["attempt"], e["lease"], e["t"]) for e in events]
    t = T0
    assert seen == [
        ("", "queued", 0, "", t),
        ("queued", "running", 0, first, t),
        ("running", "queued", 1, first, T0 + 1),
        ("queued", "running", 1, second, T0 + 2),
        ("running", "queued", 1, second, T0 + 3),
        ("queued", "running", 1, third, T0 + 4),
        ("running", "success", 1, third, T0 + 5),
    ]
    after = await scheduler.events("default", after=events[-2]["id"])
    assert [e["to"] for e in after] == ["success"]


async def test_every_job_stays_in_one_place_through_a_mixed_scenario(
    scheduler: Scheduler,
) -> None:
    policy = {"retry_policy": RetryPolicy(max_retries=2), "lease_ttl_secs": 5}
    plain = await submit_n(scheduler, 6, **policy)
    gpu = await submit_n(scheduler, 2, required_labels=["gpu"], **policy)
    later = await submit_n(scheduler, 2, delay_secs=30, **policy)
    places = await assert_one_place(scheduler, "default")
    assert {places[j] for j in later} == {"delayed"}
    assert len({places[j] for j in plain}) == len({places[j] for j in gpu}) == 1
    assert places[plain[0]].startswith("ready:") and places[gpu[0]].startswith("ready:")
    assert places[plain[0]] != places[gpu[0]]

    claims = (await scheduler.claim("w", ["gpu"], max_jobs=5, now_ms=T0)).claims
    assert {c.job.id for c in claims} <= set(plain + gpu)
    await assert_one_place(scheduler, "default")
    leases = [c.lease.lease_id for c in claims]
    await scheduler.complete(leases[0], now_ms=T0 + 1)
    await scheduler.fail(leases[1], "x", retryable=True, now_ms=T0 + 1)
    await scheduler.release(leases[2], now_ms=T0 + 1)
    await scheduler.cancel(claims[3].job.id, now_ms=T0 + 1)
    await scheduler.cancel(later[0], now_ms=T0 + 1)
    await assert_one_place(scheduler, "default")

    await Reaper(scheduler).run_once(now_ms=T0 + 10_000)  # the fifth lease lapses
    places = await assert_one_place(scheduler, "default")
    assert places[claims[4].job.id].startswith("ready:")
    await scheduler.claim("w", ["gpu"], max_jobs=20, now_ms=T0 + 40_000)
    places = await assert_one_place(scheduler, "default")
    assert places[later[1]] == "leases"
    assert len(places) == 10


# -- the queue index: hash-tagged, and idle empty queues leave it ---------------------------------

DAY_MS = 86_400_000


async def queue_keys_left(scheduler: Scheduler, queue: str) -> list[str]:
    pattern = scheduler.queue_keys(queue).prefix.replace("{", "\\{").replace("}", "\\}") + "*"
    return [cast(str, key) async for key in scheduler.redis.scan_iter(match=pattern)]


async def run_a_job(scheduler: Scheduler, queue: str) -> None:
    """One job through its whole life in ``queue``, by Redis time, kept 1 s after it ends."""
    await scheduler.submit(JobSpec(queue=queue, result_ttl_secs=1))
    lease = (await scheduler.claim("w", [], queues=[queue])).claims[0].lease
    await scheduler.complete(lease.lease_id)


async def test_the_queue_index_carries_the_namespace_hash_tag(scheduler: Scheduler) -> None:
    await scheduler.submit(JobSpec(queue="tagged"), now_ms=T0)
    key = scheduler.keys.queues
    assert key.startswith(f"{{{scheduler.settings.namespace}}}:")
    assert await scheduler.redis.type(key) == "zset"
    assert await scheduler.queues() == ["tagged"]


async def test_an_idle_empty_queue_is_forgotten_and_its_keys_deleted(
    scheduler: Scheduler,
) -> None:
    await run_a_job(scheduler, "pr-1234")
    await run_a_job(scheduler, "busy")
    assert await queue_keys_left(scheduler, "pr-1234")  # meta, stats, events, done, job ...
    now = await scheduler.now_ms()

    await Reaper(scheduler).run_once(now_ms=now + 2_000)  # purged, but active a moment ago
    assert "pr-1234" in await scheduler.queues()
    await Reaper(scheduler).run_once(now_ms=now + DAY_MS + 2_000)
    assert "pr-1234" not in await scheduler.queues()
    assert await queue_keys_left(scheduler, "pr-1234") == []
    assert await scheduler.redis.zcard(scheduler.keys.queues) == 0  # "busy" went too

    fresh = Scheduler(scheduler.redis, scheduler.settings)  # another process submits later
    await fresh.start()
    await run_a_job(fresh, "pr-1234")
    assert await fresh.queues() == ["pr-1234"]
    assert (await fresh.counters("pr-1234"))["finished:success"] == 1


async def test_queues_with_jobs_settings_or_recent_activity_are_kept(
    scheduler: Scheduler,
) -> None:
    await scheduler.submit(JobSpec(queue="later", delay_secs=10 * 86_400))
    await scheduler.submit(JobSpec(queue="waiting"))
    await run_a_job(scheduler, "paused")
    await scheduler.set_queue("paused", QueueLimits(paused=True))
    await run_a_job(scheduler, "limited")
    await scheduler.set_queue("limited", QueueLimits(max_running=3))
    await run_a_job(scheduler, "kept-long")
    lease = (await scheduler.claim("w", [], queues=["waiting"])).claims[0].lease
    await scheduler.complete(lease.lease_id)  # result kept 7 days
    now = await scheduler.now_ms()
    await Reaper(scheduler).run_once(now_ms=now + DAY_MS + 2_000)
    assert set(await scheduler.queues()) == {"later", "waiting", "paused", "limited"}
    assert (await scheduler.queue_stats("limited")).max_running == 3
    assert (await scheduler.queue_stats("paused")).paused


async def test_forgetting_refuses_a_queue_a_job_reached_meanwhile(scheduler: Scheduler) -> None:
    await run_a_job(scheduler, "q")
    q, now = scheduler.queue_keys("q"), await scheduler.now_ms()
    await Reaper(scheduler).run_once(now_ms=now + 2_000)  # the job is purged
    job = (await scheduler.submit(JobSpec(queue="q", result_ttl_secs=1))).job.id  # arrives first
    assert await scheduler.scripts.forget_queue(q, DAY_MS, now + DAY_MS + 2_000) == ["LIVE"]
    assert await scheduler.scripts.forget_queue(q, DAY_MS, now + 2_000) == ["LIVE"]
    await scheduler.cancel(job)
    await Reaper(scheduler).run_once(now_ms=now + 5_000)  # purged, but it was just active
    assert await scheduler.scripts.forget_queue(q, DAY_MS, now + 5_000) == ["ACTIVE"]
    # a submit that touched the index after the reaper's cutoff keeps the queue indexed
    [(_, touched)] = await scheduler.queue_activity()
    assert await scheduler.scripts.unindex_queue(scheduler.keys, "q", touched - 1) == ["OK", 0]
    assert await scheduler.queues() == ["q"]
    assert await scheduler.scripts.unindex_queue(scheduler.keys, "q", touched) == ["OK", 1]
    assert await scheduler.queues() == []


async def test_queues_of_the_old_untagged_set_join_the_index(scheduler: Scheduler) -> None:
    await scheduler.redis.sadd(scheduler.keys.legacy_queues, "old")
    await Reaper(scheduler).run_once(now_ms=T0)
    assert await scheduler.queues() == ["old"]
    assert await scheduler.redis.exists(scheduler.keys.legacy_queues) == 0
