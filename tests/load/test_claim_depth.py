"""Benchmark: claim + complete from a 1,000-job queue and from a 1,000,000-job queue (SPEC §5:
claim cost does not grow with queue depth)."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec
from tests.redis_server import RedisServer

SHALLOW, DEEP = 1_000, 1_000_000
CHUNK = 1000  # submit_bulk's limit
FILL_TASKS = 4
CLAIMERS = 4
ROUNDS = 4
CLAIMS_PER_ROUND = 500  # under SHALLOW, which is topped up between rounds
LABEL_SETS: list[list[str]] = [[], ["gpu"], ["linux"], ["gpu", "linux"]]
WORKER_LABELS = ["gpu", "linux"]  # satisfies every label set, so every set is a candidate
RESULTS = Path(__file__).parent / "results" / "claim_depth.json"


def _chunk(queue: str, size: int) -> list[JobSpec]:
    """Jobs spread round-robin over the label sets and a few priorities."""
    labels = islice(cycle(LABEL_SETS), size)
    return [JobSpec(queue=queue, required_labels=ls, priority=100 + n % 3, command="true")
            for n, ls in enumerate(labels)]


async def _fill(sched: Scheduler, queue: str, jobs: int) -> None:
    """Submits through the real enqueue script, a few bulk requests in flight at once."""
    chunks = [_chunk(queue, min(CHUNK, jobs - start)) for start in range(0, jobs, CHUNK)]

    async def submitter(mine: list[list[JobSpec]]) -> None:
        for specs in mine:
            await sched.submit_bulk(specs)

    await asyncio.gather(*(submitter(chunks[n::FILL_TASKS]) for n in range(FILL_TASKS)))


async def _claim_and_complete(sched: Scheduler, worker: str, queue: str, claims: int) -> None:
    for _ in range(claims):
        batch = await sched.claim(worker, WORKER_LABELS, queues=[queue])
        assert batch.claims, f"{queue} ran dry"
        await sched.complete(batch.claims[0].lease.lease_id, worker)


class Timing:
    """Wall time and Redis-side script time of the claim rounds of one queue."""

    def __init__(self) -> None:
        self.claims = 0
        self.secs = 0.0
        self.script_calls = 0
        self.script_usec = 0

    async def round(self, redis: aioredis.Redis, claimers: list[Scheduler], queue: str) -> None:
        await redis.config_resetstat()
        per = CLAIMS_PER_ROUND // len(claimers)
        start = time.perf_counter()
        await asyncio.gather(*(_claim_and_complete(s, f"bench{n}", queue, per)
                               for n, s in enumerate(claimers)))
        self.secs += time.perf_counter() - start
        self.claims += per * len(claimers)
        stats: dict[str, Any] = await redis.info("commandstats")
        evalsha = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        self.script_calls += int(evalsha["calls"])
        self.script_usec += int(evalsha["usec"])

    def report(self, depth: int) -> dict[str, float]:
        return {
            "depth": depth,
            "claims": self.claims,
            "claims_per_sec": round(self.claims / self.secs, 1),
            # claim and complete scripts alike: what Redis itself spends per call
            "redis_usec_per_script_call": round(self.script_usec / self.script_calls, 2),
        }


@pytest.mark.load
@pytest.mark.timeout(1800)
async def test_claim_rate_does_not_depend_on_queue_depth(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, namespace="bench")
    clients: list[aioredis.Redis] = []

    async def scheduler() -> Scheduler:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        clients.append(client)
        sched = Scheduler(client, settings)
        await sched.start()
        return sched

    try:
        admin = await scheduler()
        await _fill(admin, "shallow", SHALLOW)
        fill_start = time.perf_counter()
        await _fill(admin, "deep", DEEP)
        fill_secs = time.perf_counter() - fill_start
        memory: dict[str, Any] = await admin.redis.info("memory")
        claimers = [await scheduler() for _ in range(CLAIMERS)]
        timings = {"shallow": Timing(), "deep": Timing()}
        for n in range(ROUNDS):
            order = ["shallow", "deep"] if n % 2 == 0 else ["deep", "shallow"]
            for queue in order:
                await timings[queue].round(admin.redis, claimers, queue)
                await _fill(admin, queue, CLAIMS_PER_ROUND)  # back to its depth, untimed
        assert (await admin.queue_stats("deep")).ready == DEEP
    finally:
        for client in clients:
            await client.aclose()
        server.stop()

    shallow, deep = timings["shallow"].report(SHALLOW), timings["deep"].report(DEEP)
    report = {
        "shallow": shallow,
        "deep": deep,
        "deep_to_shallow_rate_ratio": round(deep["claims_per_sec"] / shallow["claims_per_sec"], 3),
        "label_sets": len(LABEL_SETS),
        "claimers": CLAIMERS,
        "fill_jobs_per_sec": round(DEEP / fill_secs),
        "redis_used_memory_mb_after_fill": round(int(memory["used_memory"]) / 2**20),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    # Generous: the point is that the cost does not grow with depth, not a timing target.
    assert deep["claims_per_sec"] >= 0.5 * shallow["claims_per_sec"]
