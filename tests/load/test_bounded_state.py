"""Benchmark: claim cost after 10k dead label sets and 2k idle queues, and reaper pass time with
1 vs 2,001 queues of which one has due work (state stays bounded by live work)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec
from leasehold.scheduler.reaper import Reaper
from tests.redis_server import RedisServer

DEAD_LABEL_SETS = 10_000
IDLE_QUEUES = 2_000
CLAIMS = 1_000  # per round and namespace
ROUNDS = 3
REAP_ROUNDS = 30
CHUNK = 1_000
RESULTS = Path(__file__).parent / "results" / "bounded_state.json"


async def _scheduler(url: str, namespace: str, clients: list[aioredis.Redis]) -> Scheduler:
    client = aioredis.Redis.from_url(url, decode_responses=True, max_connections=64)
    clients.append(client)
    sched = Scheduler(client, Settings(redis_url=url, namespace=namespace))
    await sched.start()
    return sched


async def _churn(sched: Scheduler) -> None:
    """10k distinct label sets submitted and cancelled in the claimed queue; 2k queues that each
    had a job, now cancelled."""
    for start in range(0, DEAD_LABEL_SETS, CHUNK):
        specs = [JobSpec(queue="work", command="x", required_labels=[f"pr-{n}"])
                 for n in range(start, start + CHUNK)]
        ids = [r.job.id for r in await sched.submit_bulk(specs)]
        for at in range(0, len(ids), 50):
            await asyncio.gather(*(sched.cancel(job_id) for job_id in ids[at:at + 50]))
    for start in range(0, IDLE_QUEUES, 50):
        subs = await asyncio.gather(*(sched.submit(JobSpec(queue=f"idle-{n}", command="x"))
                                      for n in range(start, start + 50)))
        await asyncio.gather(*(sched.cancel(s.job.id) for s in subs))


async def _claim_usec(sched: Scheduler) -> float:
    """Redis time per claim script call (INFO commandstats), over ``CLAIMS`` claims."""
    await sched.submit_bulk([JobSpec(queue="work", command="x", required_labels=["linux"])]
                            * CLAIMS)
    await sched.redis.config_resetstat()
    for _ in range(CLAIMS):
        batch = await sched.claim("bench", ["linux"], queues=["work"], lease_ttl_secs=3600)
        assert batch.claims
    stats: dict[str, Any] = await sched.redis.info("commandstats")
    evalsha = stats["cmdstat_evalsha"]
    return int(evalsha["usec"]) / int(evalsha["calls"])


async def _reaper_pass_ms(sched: Scheduler, busy_queues: int) -> dict[str, float]:
    """Median time of a reaper pass when one queue has an expired lease, beside ``busy_queues``
    queues with live but not due work (a ready job and a job delayed by a day each)."""
    for start in range(0, busy_queues, 50):
        names = [f"busy-{n}" for n in range(start, min(start + 50, busy_queues))]
        await asyncio.gather(*(sched.submit(JobSpec(queue=q, command="x")) for q in names))
        await asyncio.gather(*(sched.submit(JobSpec(queue=q, command="x", delay_secs=86_400))
                               for q in names))
    reaper = Reaper(sched)
    listener = asyncio.create_task(reaper._listen())
    try:
        await asyncio.wait_for(reaper._subscribed.wait(), timeout=5)
        began = time.perf_counter()
        await reaper.sweep()
        sweep_ms = (time.perf_counter() - began) * 1000
        passes: list[float] = []
        visited: list[int] = []
        for _ in range(REAP_ROUNDS):
            await sched.submit(JobSpec(queue="hot", command="x"))
            await sched.claim("dead", [], queues=["hot"], lease_ttl_secs=0.02)
            await asyncio.sleep(0.05)  # the lease lapses; its deadline came by message
            began = time.perf_counter()
            report = await reaper.reap_due()
            passes.append((time.perf_counter() - began) * 1000)
            visited.append(reaper.visited)
            assert report.expired == 1
            await sched.claim("dead", [], queues=["hot"], lease_ttl_secs=3600)  # keep it out
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await reaper._close_pubsub()
    return {"queues": busy_queues + 1, "pass_ms_median": round(statistics.median(passes), 3),
            "pass_ms_max": round(max(passes), 3), "queues_visited_per_pass": max(visited),
            "full_sweep_ms": round(sweep_ms, 1)}


@pytest.mark.load
@pytest.mark.timeout(1800)
async def test_claims_and_reaper_passes_do_not_pay_for_dead_state(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    clients: list[aioredis.Redis] = []
    try:
        fresh = await _scheduler(server.url, "fresh", clients)
        churned = await _scheduler(server.url, "churned", clients)
        start = time.perf_counter()
        await _churn(churned)
        churn_secs = time.perf_counter() - start
        labelsets_left = await churned.redis.hlen(churned.queue_keys("work").labelsets)
        usec: dict[str, list[float]] = {"fresh": [], "churned": []}
        for n in range(ROUNDS):
            order = [("fresh", fresh), ("churned", churned)]
            for name, sched in order if n % 2 == 0 else order[::-1]:
                usec[name].append(await _claim_usec(sched))
        one = await _reaper_pass_ms(await _scheduler(server.url, "reap1", clients), 0)
        many = await _reaper_pass_ms(await _scheduler(server.url, "reap2001", clients),
                                     IDLE_QUEUES)
    finally:
        for client in clients:
            await client.aclose()
        server.stop()

    claim_fresh = statistics.median(usec["fresh"])
    claim_churned = statistics.median(usec["churned"])
    report = {
        "claim_redis_usec_fresh": round(claim_fresh, 2),
        "claim_redis_usec_after_churn": round(claim_churned, 2),
        "claim_churned_to_fresh_ratio": round(claim_churned / claim_fresh, 3),
        "dead_label_sets": DEAD_LABEL_SETS,
        "idle_queues": IDLE_QUEUES,
        "labelsets_left_after_churn": labelsets_left,
        "churn_secs": round(churn_secs, 1),
        "reaper_1_queue": one,
        "reaper_2001_queues": many,
        "reaper_pass_ratio_2001_to_1": round(many["pass_ms_median"] / one["pass_ms_median"], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    assert labelsets_left == 0
    assert many["queues_visited_per_pass"] == 1
    # Generous bounds: the goal (1.2x) is reported, the test only catches a return to O(state).
    assert claim_churned <= 2 * claim_fresh
    assert many["pass_ms_median"] <= 5 * one["pass_ms_median"]
