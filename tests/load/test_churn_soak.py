"""Churn soak: labels, queues, workflows, workers and live viewers churning for minutes against a
real ``leasehold serve``; reports claim latency, reaper pass time, Redis memory and key count over
time, then checks that the key count returns to its baseline once retention has run.

Opt-in (``pytest -m load``); ``LEASEHOLD_SOAK_SECS`` sets the churn time (default 120 s; the README
reports a 10-minute run). Results go to ``tests/load/results/churn_soak.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.reaper import Reaper
from tests.processes import Child, leasehold
from tests.redis_server import RedisServer, free_port

SOAK_SECS = float(os.environ.get("LEASEHOLD_SOAK_SECS", "120"))
SAMPLE_SECS = 10.0
RESULT_TTL_SECS = 20  # short retention, so the soak sees purges and the drain back to baseline
QUEUE_IDLE_SECS = 15
WORKER_OFFLINE_SECS = 3
WORKER_RETENTION_SECS = 10
RESULTS = Path(__file__).parent / "results" / "churn_soak.json"

pytestmark = [pytest.mark.load, pytest.mark.timeout(SOAK_SECS + 600)]


@dataclass
class Sample:
    t_secs: float
    used_memory: int
    keys: int
    claim_ms_p50: float
    claim_ms_p99: float
    reap_pass_ms_max: float
    sweep_ms: float | None
    queues_indexed: int
    redis_clients: int


@dataclass
class Churn:
    """The load: every step uses fresh labels and, over time, fresh queue names."""

    http: aiohttp.ClientSession
    url: str
    counter: itertools.count[int] = field(default_factory=itertools.count)
    claim_ms: list[float] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    viewers: set[asyncio.Task[None]] = field(default_factory=set)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.url + path, json=body) as resp:
            assert resp.status < 300, (path, resp.status, await resp.text())
            return await resp.json() if resp.content_length != 0 else None

    def queue(self, epoch: int) -> str:
        return f"churn-{epoch}-{random.randrange(20)}"

    async def jobs(self, epoch: int, worker: str) -> None:
        """A job with a label set nobody has used before: half run, half cancelled."""
        n = next(self.counter)
        queue = self.queue(epoch)
        label = f"pr-{n}"
        job = await self.call("POST", "/api/jobs", {"command": f"build {n}", "queue": queue,
                                                    "required_labels": [label],
                                                    "result_ttl_secs": RESULT_TTL_SECS})
        self.job_ids.append(job["id"])
        del self.job_ids[:-200]
        if n % 2:
            await self.call("POST", f"/api/jobs/{job['id']}/cancel")
            return
        began = time.perf_counter()
        claim = await self.call("POST", "/api/jobs/claim", {
            "worker_id": worker, "labels": [label], "queues": [queue]})
        self.claim_ms.append((time.perf_counter() - began) * 1000)
        lease = claim["lease"]["lease_id"]
        if n % 4 == 0:
            await self.call("POST", f"/api/jobs/{lease}/logs",
                            {"chunks": [{"data": f"line {i}\n", "stream": "stdout"}
                                        for i in range(5)]})
        await self.call("POST", f"/api/jobs/{lease}/complete", {"outputs": {"n": n}})

    async def workflow(self, epoch: int, worker: str) -> None:
        """A two-job workflow: created, run to the end, deleted."""
        n = next(self.counter)
        queue = self.queue(epoch)
        wf = await self.call("POST", "/api/workflows", {
            "name": f"wf-{n}", "queue": queue,
            "jobs": [{"id": "a", "command": "a"},
                     {"id": "b", "command": "b", "depends_on": ["a"]}]})
        await self.call("POST", f"/api/workflows/{wf['id']}/run")
        for _ in range(2):
            claim = await self.call("POST", "/api/jobs/claim", {
                "worker_id": worker, "labels": [], "queues": [queue]})
            if claim:
                await self.call("POST", f"/api/jobs/{claim['lease']['lease_id']}/complete", {})
        await self.call("DELETE", f"/api/workflows/{wf['id']}")

    async def worker(self) -> None:
        """A worker that registers, says hello once and goes silent (the reaper removes it)."""
        n = next(self.counter)
        reg = await self.call("POST", "/api/workers/register",
                              {"worker_id": f"ephemeral-{n}", "labels": [f"host-{n}"]})
        assert reg["worker_id"] == f"ephemeral-{n}"

    def viewer(self) -> None:
        """A live log viewer and an events viewer that stay a few seconds, then leave."""
        if not self.job_ids:
            return
        job_id = random.choice(self.job_ids)

        async def watch(path: str) -> None:
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError):
                async with asyncio.timeout(random.uniform(1, 4)), \
                        self.http.get(self.url + path) as resp:
                    async for _ in resp.content:
                        pass

        for path in (f"/api/jobs/{job_id}/logs/stream",
                     f"/api/events?queue={job_id.rsplit('.', 1)[0]}"):
            task = asyncio.create_task(watch(path))
            self.viewers.add(task)
            task.add_done_callback(self.viewers.discard)


async def _keys(probe: aioredis.Redis) -> int:
    return int(await probe.dbsize())


async def _reaper_loop(reaper: Reaper, stop: asyncio.Event, passes: list[float],
                       sweeps: list[float]) -> None:
    """A reaper in this process, timed pass by pass (the serve process runs none)."""
    listener = asyncio.create_task(reaper._listen())
    try:
        await asyncio.wait_for(reaper._subscribed.wait(), timeout=5)
        last_sweep = 0.0
        while not stop.is_set():
            began = time.perf_counter()
            if time.monotonic() - last_sweep > QUEUE_IDLE_SECS:
                await reaper.sweep()
                await reaper.workers.sweep()
                sweeps.append((time.perf_counter() - began) * 1000)
                last_sweep = time.monotonic()
            else:
                await reaper.run_once()
                passes.append((time.perf_counter() - began) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


@contextlib.asynccontextmanager
async def _service(tmp_path: Path) -> AsyncIterator[tuple[str, str, aioredis.Redis, Settings]]:
    server = RedisServer(tmp_path / "redis")
    admin = "lha_" + secrets.token_urlsafe(24)
    settings = Settings(redis_url=server.url, namespace="soak", queue_idle_secs=QUEUE_IDLE_SECS,
                        worker_offline_secs=WORKER_OFFLINE_SECS,
                        worker_retention_secs=WORKER_RETENTION_SECS,
                        result_ttl_secs=RESULT_TTL_SECS)
    env = {**os.environ, "LEASEHOLD_REDIS_URL": server.url, "LEASEHOLD_NAMESPACE": "soak",
           "LEASEHOLD_ADMIN_TOKEN": admin, "LEASEHOLD_LOG_LEVEL": "warning",
           "LEASEHOLD_RESULT_TTL_SECS": str(RESULT_TTL_SECS)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve: Child = leasehold(["serve", "--port", str(port)], env, tmp_path, "serve")
    probe = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        serve.wait_ready(url)
        yield url, admin, probe, settings
    finally:
        serve.stop()
        await probe.aclose()
        server.stop()


async def test_churn_soak_keeps_state_bounded(tmp_path: Path) -> None:
    async with _service(tmp_path) as (url, admin, probe, settings):
        sched_client = aioredis.Redis.from_url(settings.redis_url or "", decode_responses=True)
        sched = Scheduler(sched_client, settings)
        await sched.start()
        reaper = Reaper(sched)
        headers = {"Authorization": f"Bearer {admin}"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            churn = Churn(http, url)
            await churn.call("POST", "/api/workers/register", {"worker_id": "soak-w",
                                                               "labels": []})
            baseline_keys = await _keys(probe)
            stop = asyncio.Event()
            passes: list[float] = []
            sweeps: list[float] = []
            reaping = asyncio.create_task(_reaper_loop(reaper, stop, passes, sweeps))
            samples: list[Sample] = []
            began = time.monotonic()
            next_sample = began + SAMPLE_SECS
            step = 0
            while time.monotonic() - began < SOAK_SECS:
                epoch = int((time.monotonic() - began) // QUEUE_IDLE_SECS)
                await asyncio.gather(*(churn.jobs(epoch, "soak-w") for _ in range(10)))
                if step % 10 == 0:
                    await churn.call("POST", "/api/workers/soak-w/heartbeat", {})
                    await churn.workflow(epoch, "soak-w")
                    await churn.worker()
                if step % 4 == 0:
                    churn.viewer()
                step += 1
                await asyncio.sleep(0.05)
                if time.monotonic() >= next_sample:
                    samples.append(await _sample(probe, began, churn, passes, sweeps))
                    next_sample += SAMPLE_SECS
            for task in list(churn.viewers):
                task.cancel()
            await asyncio.gather(*churn.viewers, return_exceptions=True)
            # Retention, idle queues and silent workers all end within this wait.
            drain_until = time.monotonic() + RESULT_TTL_SECS + QUEUE_IDLE_SECS * 2 + 15
            while time.monotonic() < drain_until:  # polls Redis: nothing to wait on
                if await _keys(probe) <= baseline_keys:
                    break
                await asyncio.sleep(2)
            final_keys = await _keys(probe)
            stop.set()
            await reaping
        await reaper._close_pubsub()
        await sched_client.aclose()
        report = _report(samples, baseline_keys, final_keys, step)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["summary"], indent=2))
        assert final_keys <= baseline_keys + 2, report["summary"]


async def _sample(probe: aioredis.Redis, began: float, churn: Churn, passes: list[float],
                  sweeps: list[float]) -> Sample:
    memory: dict[str, Any] = await probe.info("memory")
    clients: dict[str, Any] = await probe.info("clients")
    claims = sorted(churn.claim_ms) or [0.0]
    sample = Sample(
        t_secs=round(time.monotonic() - began, 1), used_memory=int(memory["used_memory"]),
        keys=await _keys(probe), claim_ms_p50=round(statistics.median(claims), 2),
        claim_ms_p99=round(claims[int(len(claims) * 0.99) - 1 if len(claims) > 1 else 0], 2),
        reap_pass_ms_max=round(max(passes, default=0.0), 2),
        sweep_ms=round(sweeps[-1], 1) if sweeps else None,
        queues_indexed=int(await probe.zcard("{soak}:queues")),
        redis_clients=int(clients["connected_clients"]))
    churn.claim_ms.clear()
    passes.clear()
    print(sample)
    return sample


def _report(samples: list[Sample], baseline_keys: int, final_keys: int,
            steps: int) -> dict[str, Any]:
    third = max(1, len(samples) // 3)
    first = [s.used_memory for s in samples[1:third + 1]] or [0]
    last = [s.used_memory for s in samples[-third:]] or [0]
    return {
        "soak_secs": SOAK_SECS,
        "summary": {
            "steps": steps,
            "baseline_keys": baseline_keys, "final_keys": final_keys,
            "memory_first_third_mib": round(statistics.mean(first) / 2**20, 2),
            "memory_last_third_mib": round(statistics.mean(last) / 2**20, 2),
            "claim_ms_p50_first": samples[0].claim_ms_p50 if samples else None,
            "claim_ms_p50_last": samples[-1].claim_ms_p50 if samples else None,
            "reap_pass_ms_max": max((s.reap_pass_ms_max for s in samples), default=None),
            "max_queues_indexed": max((s.queues_indexed for s in samples), default=None),
            "max_redis_clients": max((s.redis_clients for s in samples), default=None),
        },
        "samples": [s.__dict__ for s in samples],
    }
