"""Scaling benchmarks (issue #8): claim rate with 1 vs 50 distinct label sets, Redis memory per
queued job, and HTTP throughput with 1 vs 2 API processes on one Redis.

Each test merges its figures into ``results/scaling.json``. The claim rate with 1,000 vs
1,000,000 queued jobs is ``test_claim_depth.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from leasehold.api.cli.bench import Bench, BenchConfig, serve
from leasehold.api.cli.bench import run_sync as bench_run
from leasehold.api.cli.bench_report import Result
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec
from tests.redis_server import RedisServer

RESULTS = Path(__file__).parent / "results" / "scaling.json"
CHUNK = 1000
LABEL_SET_COUNTS = (1, 50)
QUEUED = 20_000  # jobs per label-set queue, topped up between rounds
CLAIMERS = 4
ROUNDS = 4
CLAIMS_PER_ROUND = 1000
MEMORY_JOBS = 100_000
HTTP_JOBS = 10_000


def _merge(key: str, value: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    found = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    found[key] = value
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps({key: value}, indent=2))


async def _fill(sched: Scheduler, queue: str, jobs: int, label_sets: list[list[str]]) -> None:
    for start in range(0, jobs, CHUNK):
        size = min(CHUNK, jobs - start)
        await sched.submit_bulk([
            JobSpec(queue=queue, command="true",
                    required_labels=label_sets[(start + n) % len(label_sets)])
            for n in range(size)])


async def _claimers(url: str, settings: Settings, count: int) -> tuple[list[Scheduler],
                                                                       list[aioredis.Redis]]:
    clients = [aioredis.Redis.from_url(url, decode_responses=True) for _ in range(count)]
    scheds = [Scheduler(client, settings) for client in clients]
    for sched in scheds:
        await sched.start()
    return scheds, clients


@pytest.mark.load
@pytest.mark.timeout(900)
async def test_claim_rate_with_1_vs_50_label_sets(tmp_path: Path) -> None:
    """Every label set is one the worker satisfies, so the claim script looks at each head."""
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, namespace="bench")
    scheds, clients = await _claimers(server.url, settings, CLAIMERS + 1)
    admin, claimers = scheds[0], scheds[1:]
    sets: dict[int, list[list[str]]] = {
        count: [[f"l{n}"] for n in range(count)] if count > 1 else [[]]
        for count in LABEL_SET_COUNTS}
    worker_labels = [f"l{n}" for n in range(max(LABEL_SET_COUNTS))]
    timing: dict[int, dict[str, float]] = {
        count: {"claims": 0, "secs": 0.0, "calls": 0, "usec": 0} for count in sets}
    try:
        for count, label_sets in sets.items():
            await _fill(admin, f"sets{count}", QUEUED, label_sets)

        async def claim_complete(sched: Scheduler, worker: str, queue: str, n: int) -> None:
            for _ in range(n):
                batch = await sched.claim(worker, worker_labels, queues=[queue])
                assert batch.claims, f"{queue} ran dry"
                await sched.complete(batch.claims[0].lease.lease_id, worker)

        for rnd in range(ROUNDS):
            for count in sorted(sets, reverse=rnd % 2 == 1):
                queue, per = f"sets{count}", CLAIMS_PER_ROUND // CLAIMERS
                await admin.redis.config_resetstat()
                started = time.perf_counter()
                await asyncio.gather(*(claim_complete(s, f"w{n}", queue, per)
                                       for n, s in enumerate(claimers)))
                timing[count]["secs"] += time.perf_counter() - started
                timing[count]["claims"] += per * CLAIMERS
                stats: dict[str, Any] = await admin.redis.info("commandstats")
                evalsha = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
                timing[count]["calls"] += int(evalsha["calls"])
                timing[count]["usec"] += int(evalsha["usec"])
                await _fill(admin, queue, per * CLAIMERS, sets[count])  # untimed top-up
    finally:
        for client in clients:
            await client.aclose()
        server.stop()

    report: dict[str, Any] = {"queued_jobs_per_queue": QUEUED, "claimers": CLAIMERS}
    for count, t in timing.items():
        report[f"label_sets_{count}"] = {
            "claims": t["claims"], "claims_per_sec": round(t["claims"] / t["secs"], 1),
            "redis_usec_per_script_call": round(t["usec"] / t["calls"], 2)}
    one, fifty = report["label_sets_1"], report["label_sets_50"]
    report["rate_ratio_50_to_1"] = round(fifty["claims_per_sec"] / one["claims_per_sec"], 3)
    _merge("label_sets", report)
    assert fifty["claims_per_sec"] > 0


@pytest.mark.load
@pytest.mark.timeout(600)
async def test_memory_per_queued_job(tmp_path: Path) -> None:
    """INFO used_memory before and after 100k small jobs (no payload, a short command)."""
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, namespace="bench")
    scheds, clients = await _claimers(server.url, settings, 1)
    sched = scheds[0]
    try:
        await _fill(sched, "warm", 100, [[]])  # scripts, queue registry and first keys exist
        before: dict[str, Any] = await sched.redis.info("memory")
        await _fill(sched, "mem", MEMORY_JOBS, [[]])
        after: dict[str, Any] = await sched.redis.info("memory")
        jobs, _ = await sched.list_jobs("mem", limit=1)
        q = sched.queue_keys("mem")
        job_hash = await sched.redis.memory_usage(q.job(jobs[0].id), samples=0)
        fields = len(await sched.raw_record(jobs[0].id))
        ready = await sched.redis.keys(q.prefix + "ready:*")
        ready_bytes = sum([await sched.redis.memory_usage(k, samples=0) or 0 for k in ready])
        index_bytes: int = await sched.redis.memory_usage(q.index, samples=0) or 0
    finally:
        for client in clients:
            await client.aclose()
        server.stop()
    delta = int(after["used_memory"]) - int(before["used_memory"])
    report: dict[str, Any] = {
        "jobs": MEMORY_JOBS,
        "job": "JobSpec(queue='mem', command='true'): no payload, no labels, defaults",
        "used_memory_delta_mb": round(delta / 2**20, 1),
        "bytes_per_queued_job": round(delta / MEMORY_JOBS),
        "job_hash_fields": fields,
        "job_hash_memory_usage_bytes": job_hash,
        "ready_zset_bytes_per_job": round(ready_bytes / MEMORY_JOBS, 1),
        "index_zset_bytes_per_job": round(index_bytes / MEMORY_JOBS, 1),
    }
    _merge("memory", report)
    assert delta > 0


@pytest.mark.load
@pytest.mark.timeout(900)
def test_http_throughput_with_1_vs_2_api_processes(tmp_path: Path) -> None:
    """Claim→complete (one job per request, 64 workers) and batch (8 workers, 50 per claim)
    over HTTP, the bench client's workers spread round-robin over the API processes."""
    server = RedisServer(tmp_path / "redis")
    report: dict[str, Any] = {"jobs": HTTP_JOBS}

    async def plan(bench: Bench) -> list[Result]:
        found: list[Result] = []
        for _ in range(2):  # twice each, alternating with the other process count's runs
            queue = bench.queue(f"single{len(found)}")
            await bench.fill(queue, HTTP_JOBS)
            found.append(await bench.measured(bench.burn_single(queue, HTTP_JOBS, 64)))
            queue = bench.queue(f"batch{len(found)}")
            await bench.fill(queue, HTTP_JOBS)
            found.append(await bench.measured(bench.burn_batch(queue, HTTP_JOBS, 8)))
        return found

    try:
        for processes in (1, 2):
            with serve(server.url, processes) as bases:
                results, about = bench_run(BenchConfig(jobs=HTTP_JOBS), bases, server.url, plan)
            best = {mode: max(r.rate for r in results if r.mode == mode)
                    for mode in ("single", "batch")}
            p99 = [r.row()["p99_ms"] for r in results if r.mode == "single"]
            report[f"api_processes_{processes}"] = {
                "single_jobs_per_sec": round(best["single"], 1),
                "batch_jobs_per_sec": round(best["batch"], 1),
                "single_claim_p99_ms": min(p99)}
            report["machine"] = about
    finally:
        server.stop()
    one, two = report["api_processes_1"], report["api_processes_2"]
    report["single_ratio_2_to_1"] = round(two["single_jobs_per_sec"] / one["single_jobs_per_sec"],
                                          3)
    report["batch_ratio_2_to_1"] = round(two["batch_jobs_per_sec"] / one["batch_jobs_per_sec"], 3)
    _merge("api_processes", report)
