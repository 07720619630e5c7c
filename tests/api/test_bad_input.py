"""Bad input is refused with a 4xx and a clear message, and leaves Redis exactly as it was."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.conftest import MakeApi
from tests.api.harness import NO_BODY, Api, snapshot

JOB = "default.AAAAAAAAAAAAAAAAAAAAAA"
BAD_JOB_SPECS: list[Any] = [
    {"priority": "high"}, {"command": "x", "status": "success"}, {"command": "x", "attempt": 5},
    {"command": "x", "id": JOB}, {"command": "x", "job_id": "mine"},
    {"command": "x", "worker_id": "w1"}, {"command": "x", "outputs": {"a": 1}},
    {"command": "x", "enqueued_at_ms": 0}, {"command": "x", "lease_id": "l"},
    {"queue": "bad name"}, {"priority": 1001}, {"priority": -1},
    {"delay_secs": 1, "run_at_ms": 5}, {"required_labels": "docker"},
    {"retry_policy": {"max_retries": -1}}, {"retry_policy": {"backoff": "Linear"}},
    {"metadata": [1]}, {"unique_key": ""}, [], "job", None,
]


def _requests(lease_id: str, job_id: str) -> list[tuple[str, str, Any, bytes | None]]:
    """(method, path, JSON body or NO_BODY, raw bytes) of requests that must all be refused."""
    lease = f"/api/jobs/{lease_id}"
    reqs: list[tuple[str, str, Any, bytes | None]] = [
        ("POST", "/api/jobs", spec, None) for spec in BAD_JOB_SPECS]
    reqs += [
        ("POST", "/api/jobs", NO_BODY, b'{"command": "x"'),
        ("POST", "/api/jobs", NO_BODY, b"\xff\xfe not utf-8"),
        ("POST", "/api/jobs", {"command": "x" * 10_240}, None),
        ("POST", "/api/jobs/bulk", {"jobs": [{"command": "ok"}, {"status": "success"}]}, None),
        ("POST", "/api/jobs/bulk", {"jobs": [{"command": "a"}, {"queue": "q2"}]}, None),
        ("POST", "/api/jobs/bulk", {"jobs": []}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "max_jobs": 0}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "max_jobs": 101}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "wait_secs": 31}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "queues": ["bad name"]}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "lease_ttl_secs": -1}, None),
        ("POST", "/api/jobs/claim", {"worker_id": "w1", "labels": "docker"}, None),
        ("POST", "/api/jobs/claim", {"labels": []}, None),
        ("POST", f"{lease}/heartbeat", {"progress": 101}, None),
        ("POST", f"{lease}/heartbeat", {"lease_ttl_secs": "long"}, None),
        ("POST", f"{lease}/heartbeat", {"status": "success"}, None),
        ("POST", f"{lease}/complete", {"outputs": [1]}, None),
        ("POST", f"{lease}/complete", {"outputs": {}, "status": "failure"}, None),
        ("POST", f"{lease}/fail", {}, None),
        ("POST", f"{lease}/fail", {"error": "x", "retryable": "maybe"}, None),
        ("POST", f"{lease}/logs", {"chunks": [{"data": "x", "stream": "tty"}]}, None),
        ("POST", f"{lease}/logs", {}, None),
        ("POST", "/api/leases/heartbeat", {"leases": [{"lease_id": lease_id, "progress": 101}]},
         None),
        ("POST", "/api/jobs/garbage/heartbeat", NO_BODY, None),
        ("POST", "/api/jobs/garbage/release", NO_BODY, None),
        ("GET", "/api/jobs/bad-id", NO_BODY, None),
        ("POST", "/api/jobs/bad-id/cancel", NO_BODY, None),
        ("POST", f"/api/jobs/{job_id}/retry", NO_BODY, None),
        ("GET", "/api/jobs?cursor=abc", NO_BODY, None),
        ("PUT", "/api/queues/bad%20name", {"paused": True}, None),
        ("PUT", "/api/queues/default", {"max_running": -1}, None),
        ("PUT", "/api/queues/default", {"rate_limit": {"limit": 1}}, None),
        ("POST", "/api/tokens", {"role": "god", "name": "x"}, None),
        ("POST", "/api/tokens", {"role": "worker", "name": "x"}, None),
        ("POST", "/api/tokens", {"role": "viewer"}, None),
        ("POST", "/api/registration-tokens", {"ttl_secs": 90_000}, None),
        ("POST", "/api/registration-tokens", {"uses": 0}, None),
        ("POST", "/api/workers/register", {"worker_id": "bad id!"}, None),
        ("POST", "/api/workers/register", {"worker_id": "w9", "labels": "docker"}, None),
        ("POST", "/api/workers/register", {"worker_id": "w9", "role": "admin"}, None),
        ("POST", "/api/workers/w1/heartbeat", {"running_jobs": -1}, None),
        ("POST", "/api/workers/ghost/heartbeat", NO_BODY, None),
        ("POST", "/api/workflows", {"name": "x", "jobs": [
            {"id": "a", "command": "x", "depends_on": ["b"]}]}, None),
        ("POST", "/api/workflows", {"name": "x", "jobs": [
            {"id": "a", "command": "x", "depends_on": ["a"]}]}, None),
        ("POST", "/api/workflows", NO_BODY, b"name: [unclosed"),
        ("POST", "/api/workflows/ghost/run", NO_BODY, None),
        ("POST", "/api/stream-tickets", {"path": "/api/jobs"}, None),
    ]
    return reqs


async def test_bad_requests_change_nothing_in_redis(
    make_api: MakeApi, redis: aioredis.Redis, settings: Settings
) -> None:
    api = await make_api(max_body_bytes=2048)
    await api.post("/api/workers/register", {"worker_id": "w1", "labels": []})
    job = await api.submit(command="real", retry_policy={"max_retries": 3})
    lease_id = (await api.claim("w1"))["lease"]["lease_id"]
    _, viewer = await api.api_token("viewer")
    before = await snapshot(redis, settings.namespace)
    assert before, "the snapshot sees the namespace's keys"

    refused: list[tuple[str, str, int, str]] = []
    for method, path, body, raw in _requests(lease_id, job["id"]):
        yaml = {"Content-Type": "application/yaml"} if raw == b"name: [unclosed" else None
        reply = await api.call(method, path, body, data=raw, headers=yaml)
        refused.append((method, path, reply.status, reply.body["error"]))
        assert 400 <= reply.status < 500, (method, path, body, reply.text)
        assert len(reply.body["message"]) >= 8, reply.text
        if reply.body["error"] == "invalid_request":
            assert reply.body["details"], reply.text
    for token in (None, "lha_wrong", viewer):
        reply = await api.post("/api/jobs", {"command": "x"}, token=token)
        assert reply.status in (401, 403), reply.text

    assert await snapshot(redis, settings.namespace) == before
    statuses = {status for _, _, status, _ in refused}
    assert {400, 404, 409, 413} <= statuses, refused


async def test_request_bodies_are_strictly_typed_and_bodies_required_when_the_document_says_so(
        api: Api) -> None:
    """No bool or string stands in for a number; an integer is still a number; a body with a
    required field cannot be left out, and one without may be (as /openapi.json says)."""
    for bad in ({"unique_ttl_secs": False}, {"priority": "5"}, {"priority": True},
                {"priority": 5.5}):
        reply = await api.post("/api/jobs", bad)
        assert reply.status == 400 and reply.body["error"] == "invalid_request", bad
    assert (await api.post("/api/jobs", {"command": "true", "lease_ttl_secs": 30,
                            "unique_ttl_secs": 0})).status \
        in (200, 201)
    document = (await api.get("/openapi.json", token=None)).body
    tokens = document["paths"]["/api/tokens"]["post"]["requestBody"]
    assert tokens["required"] is True
    assert (await api.post("/api/tokens")).status == 400
    regs = document["paths"]["/api/registration-tokens"]["post"]["requestBody"]
    assert regs["required"] is False
    assert (await api.post("/api/registration-tokens")).status == 201
