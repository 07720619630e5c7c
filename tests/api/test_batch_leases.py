"""Batch lease calls: one request for many leases, each item fenced on its own."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.harness import Api


async def _leases(api: Api, worker: Api, count: int, **claim: Any) -> list[dict[str, Any]]:
    for i in range(count):
        await api.submit(command=f"job {i}", retry_policy={"max_retries": 1})
    reply = await worker.post("/api/jobs/claim", {"max_jobs": count, **claim})
    assert reply.status == 200 and len(reply.body["claims"]) == count, reply.text
    return [c["lease"] for c in reply.body["claims"]]


def _by_id(reply_body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["lease_id"]: r for r in reply_body["results"]}


async def test_batch_heartbeat_reports_each_lease_on_its_own(api: Api) -> None:
    worker = await api.register("wb1")
    expiring = await _leases(api, worker, 1, lease_ttl_secs=0.3)
    live, finished, cancelled = await _leases(api, worker, 3, lease_ttl_secs=30)
    await worker.post(f"/api/jobs/{finished['lease_id']}/complete")
    await api.post(f"/api/jobs/{cancelled['job_id']}/cancel")
    await asyncio.sleep(0.45)
    items = [{"lease_id": live["lease_id"], "lease_ttl_secs": 60, "progress": 40},
             {"lease_id": expiring[0]["lease_id"]}, {"lease_id": "garbage"},
             {"lease_id": finished["lease_id"]}, {"lease_id": cancelled["lease_id"]}]
    reply = await worker.post("/api/leases/heartbeat", {"leases": items})
    assert reply.status == 200, reply.text
    assert [r["lease_id"] for r in reply.body["results"]] == [i["lease_id"] for i in items]
    results = _by_id(reply.body)
    ok = results[live["lease_id"]]
    assert ok["ok"] is True and ok["cancelled"] is False
    assert ok["expires_at_ms"] >= live["granted_at_ms"] + 60_000
    assert results[expiring[0]["lease_id"]]["ok"] is False
    assert results[expiring[0]["lease_id"]]["error"] == "lease_expired"
    assert results["garbage"]["error"] == "lease_not_found"
    assert results[finished["lease_id"]]["error"] == "job_finished"
    assert results[cancelled["lease_id"]]["ok"] is True
    assert results[cancelled["lease_id"]]["cancelled"] is True
    assert (await api.job(live["job_id"]))["progress"] == 40


async def test_batch_complete_finishes_only_the_valid_leases(api: Api) -> None:
    worker = await api.register("wb2")
    other = await api.register("wb2-other")
    expiring = (await _leases(api, worker, 1, lease_ttl_secs=0.3))[0]
    first, second = await _leases(api, worker, 2)
    foreign = (await _leases(api, other, 1))[0]
    await asyncio.sleep(0.45)
    completions = [{"lease_id": first["lease_id"], "outputs": {"n": 1}},
                   {"lease_id": expiring["lease_id"]}, {"lease_id": second["lease_id"]},
                   {"lease_id": foreign["lease_id"]}]
    reply = await worker.post("/api/leases/complete", {"completions": completions})
    assert reply.status == 200, reply.text
    results = _by_id(reply.body)
    assert results[first["lease_id"]] == {**results[first["lease_id"]], "ok": True}
    assert results[second["lease_id"]]["ok"] is True
    assert results[expiring["lease_id"]]["error"] == "lease_expired"
    assert results[foreign["lease_id"]]["error"] == "not_lease_owner"
    assert (await api.job(first["job_id"]))["outputs"] == {"n": 1}
    assert (await api.job(second["job_id"]))["status"] == "success"
    assert (await api.job(expiring["job_id"]))["status"] == "running"
    assert (await api.job(foreign["job_id"]))["status"] == "running"


async def test_batch_fail_retries_or_fails_each_lease(api: Api) -> None:
    worker = await api.register("wb3")
    retried, dead, done = await _leases(api, worker, 3)
    await worker.post(f"/api/jobs/{done['lease_id']}/complete")
    failures = [{"lease_id": retried["lease_id"], "error": "flaky", "retryable": True},
                {"lease_id": dead["lease_id"], "error": "bad input"},
                {"lease_id": done["lease_id"], "error": "late"}]
    reply = await worker.post("/api/leases/fail", {"failures": failures})
    assert reply.status == 200, reply.text
    results = _by_id(reply.body)
    assert results[retried["lease_id"]]["ok"] is True
    assert results[retried["lease_id"]]["will_retry"] is True
    assert results[dead["lease_id"]]["will_retry"] is False
    assert results[done["lease_id"]] == {**results[done["lease_id"]], "ok": False,
                                         "error": "job_finished"}
    retried_job = await api.job(retried["job_id"])
    assert retried_job["status"] == "queued" and retried_job["attempt"] == 1
    dead_job = await api.job(dead["job_id"])
    assert dead_job["status"] == "failure" and dead_job["error"] == "bad input"
    assert (await api.job(done["job_id"]))["status"] == "success"


async def test_batch_requests_need_at_least_one_item(api: Api) -> None:
    for path, field in (("heartbeat", "leases"), ("complete", "completions"),
                        ("fail", "failures")):
        reply = await api.post(f"/api/leases/{path}", {field: []})
        assert reply.status == 400 and reply.body["details"][0]["loc"] == [field]
