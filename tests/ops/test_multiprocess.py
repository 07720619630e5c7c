"""Two real ``leasehold serve`` processes and a ``leasehold reaper`` on one Redis: every process
reports the same exact lifecycle totals, and each logs one JSON line per request and job event."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ops.scrape import Samples, family, parse, value
from tests.processes import Child, children, leasehold, serve_processes

SHARED = ("leasehold_jobs_submitted_total", "leasehold_jobs_claimed_total",
          "leasehold_jobs_retried_total", "leasehold_leases_expired_total",
          "leasehold_jobs_finished_total", "leasehold_queue_jobs")
REQUEST_ID = "ops-req-0001"


class Fleet:
    def __init__(self, urls: list[str], procs: list[Child]) -> None:
        self.a, self.b = urls
        self.serve_a, self.serve_b, self.reaper = procs


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[Fleet]:
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
           "LEASEHOLD_NAMESPACE": f"ops{uuid.uuid4().hex[:10]}",
           "LEASEHOLD_REAP_INTERVAL_SECS": "0.2", "LEASEHOLD_LOG_FORMAT": "json",
           "LEASEHOLD_LOG_LEVEL": "info"}
    with children() as procs:
        urls = serve_processes(procs, env, tmp_path, "--no-auth")
        procs.append(leasehold(["reaper"], env, tmp_path, "reaper"))
        yield Fleet(urls, procs)


class Http:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.registered: set[str] = set()

    async def __call__(self, base: str, method: str, path: str, body: Any = None,
                       expect: int = 200, headers: dict[str, str] | None = None) -> Any:
        async with self.session.request(method, base + path, json=body,
                                        headers=headers) as resp:
            assert resp.status == expect, (path, await resp.text())
            return await resp.json() if resp.content_type == "application/json" else None


async def _claim(http: Http, base: str, worker: str, queue: str, n: int, ttl: float = 30,
                 wait: float = 0) -> list[dict[str, Any]]:
    if worker not in http.registered:  # a claim names a registered worker
        await http(base, "POST", "/api/workers/register", {"worker_id": worker}, 201)
        http.registered.add(worker)
    reply = await http(base, "POST", "/api/jobs/claim", {
        "worker_id": worker, "queues": [queue], "max_jobs": n, "lease_ttl_secs": ttl,
        "wait_secs": wait})
    claims: list[dict[str, Any]] = reply["claims"]
    assert len(claims) == n
    return claims


def _lease(claim: dict[str, Any]) -> str:
    lease_id: str = claim["lease"]["lease_id"]
    return lease_id


async def _workload(http: Http, fleet: Fleet, qa: str, qb: str) -> None:
    a, b = fleet.a, fleet.b
    policy = {"max_retries": 1, "backoff": "None"}
    for base, count in ((a, 6), (b, 4)):
        await http(base, "POST", "/api/jobs/bulk", {"jobs": [
            {"command": "true", "queue": qa, "retry_policy": policy}] * count}, 201)
    expiring, cancelled = [(await http(b, "POST", "/api/jobs", {"command": "x", "queue": qb},
                                       201))["id"] for _ in range(2)]
    la = await _claim(http, a, "wA", qa, 5)
    lb = await _claim(http, b, "wB", qa, 5)
    for claim in la[:3]:  # a lease granted by A, completed through B
        headers = {"X-Request-ID": REQUEST_ID} if claim is la[0] else None
        await http(b, "POST", f"/api/jobs/{_lease(claim)}/complete", {}, headers=headers)
    await http(a, "POST", f"/api/jobs/{_lease(la[3])}/fail", {"error": "bad input"})
    await http(b, "POST", f"/api/jobs/{_lease(la[4])}/fail", {"error": "flaky",
                                                              "retryable": True})
    await http(a, "POST", "/api/leases/complete", {"completions": [
        {"lease_id": _lease(c)} for c in lb[:2]]})
    await http(a, "POST", "/api/leases/fail", {"failures": [
        {"lease_id": _lease(lb[2]), "error": "flaky", "retryable": True}]})
    await http(b, "POST", f"/api/jobs/{_lease(lb[3])}/release")
    await http(b, "POST", f"/api/jobs/{_lease(lb[4])}/heartbeat", {"progress": 50})
    await http(a, "POST", f"/api/jobs/{_lease(lb[4])}/complete", {})
    for claim in await _claim(http, a, "wA", qa, 3, wait=5):  # two retries and one release
        await http(b, "POST", f"/api/jobs/{_lease(claim)}/complete", {})
    await http(a, "POST", f"/api/jobs/{cancelled}/cancel", None, 202)
    lost = (await _claim(http, b, "wB", qb, 1, ttl=0.3))[0]
    deadline = time.monotonic() + 10
    while (await http(a, "GET", f"/api/jobs/{expiring}"))["status"] != "failure":
        assert time.monotonic() < deadline, "the reaper did not expire the lease"
        await asyncio.sleep(0.1)
    await http(a, "POST", f"/api/jobs/{_lease(lost)}/complete", {}, expect=409)


Expected = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _expected(qa: str, qb: str) -> Expected:
    counts = {
        ("leasehold_jobs_submitted_total", qa): 10, ("leasehold_jobs_submitted_total", qb): 2,
        ("leasehold_jobs_claimed_total", qa): 13, ("leasehold_jobs_claimed_total", qb): 1,
        ("leasehold_jobs_retried_total", qa): 2, ("leasehold_jobs_retried_total", qb): 0,
        ("leasehold_leases_expired_total", qa): 0, ("leasehold_leases_expired_total", qb): 1,
    }
    expected: Expected = {(name, (("queue", q),)): n for (name, q), n in counts.items()}
    for queue, status, n in ((qa, "success", 9), (qa, "failure", 1), (qa, "cancelled", 0),
                             (qb, "success", 0), (qb, "failure", 1), (qb, "cancelled", 1)):
        expected[("leasehold_jobs_finished_total", (("queue", queue), ("status", status)))] = n
    for queue, state, n in ((qa, "ready", 0), (qa, "running", 0), (qa, "failure", 1),
                            (qb, "ready", 0), (qb, "failure", 1)):
        expected[("leasehold_queue_jobs", (("queue", queue), ("state", state)))] = n
    return expected


def _shared(samples: Samples) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    return {name: family(samples, name) for name in SHARED}


async def test_two_api_processes_and_a_reaper_report_the_same_exact_totals(
        fleet: Fleet) -> None:
    qa, qb = "alpha", "beta"
    async with aiohttp.ClientSession() as session:
        http = Http(session)
        await _workload(http, fleet, qa, qb)
        scrape_a = parse(await (await session.get(fleet.a + "/metrics")).text())
        scrape_b = parse(await (await session.get(fleet.b + "/metrics")).text())

    assert _shared(scrape_a) == _shared(scrape_b)
    for (name, labels), count in _expected(qa, qb).items():
        assert value(scrape_a, name, **dict(labels)) == count, (name, labels)
    # Histograms are per process: A leased 5 + 3 jobs, B leased 5 + 1.
    assert value(scrape_a, "leasehold_job_wait_seconds_count", queue=qa) == 8
    assert value(scrape_b, "leasehold_job_wait_seconds_count", queue=qa) == 5
    assert value(scrape_a, "leasehold_reaper_passes_total") >= 1
    assert value(scrape_b, "leasehold_reaper_last_pass_timestamp_seconds") > time.time() - 60
    _check_logs(fleet, qa)


def _check_logs(fleet: Fleet, qa: str) -> None:
    a, b = fleet.serve_a, fleet.serve_b
    [line] = [r for r in b.logs("request") if r.get("request_id") == REQUEST_ID]
    assert line["route"] == "/api/jobs/{lease_id}/complete" and line["status"] == 200
    assert line["method"] == "POST" and isinstance(line["duration_ms"], float)
    assert line["level"] == "info" and line["timestamp"].endswith("Z")
    [done] = [r for r in b.logs("job_completed") if r.get("request_id") == REQUEST_ID]
    assert done["queue"] == qa and done["lease_id"].startswith(done["job_id"] + ".")
    assert done["worker_id"] is None and done["run_ms"] >= 0  # auth off: no caller identity
    claimed = [r for r in a.logs("job_claimed") if r["queue"] == qa]
    assert len(claimed) == 8 and {r["worker_id"] for r in claimed} == {"wA"}
    assert all(r["lease_id"].startswith(r["job_id"] + ".") for r in claimed)
    assert {r["will_retry"] for r in a.logs("job_failed")} == {False, True}
    [lost] = a.logs("lease_lost")
    assert lost["reason"] == "lease_expired" and lost["queue"] == "beta"
    assert a.logs("redis_persistence_disabled"), "the test Redis has neither AOF nor RDB"
    assert any(r["expired"] == 1 for r in fleet.reaper.logs("reaper_pass_finished"))
    for child in (a, b, fleet.reaper):
        text = child.out.read_text()
        assert text and all(line.startswith("{") for line in text.splitlines()
                            if not line.startswith(("Leasehold is serving", "Auth is OFF")))
