"""A Tendril agent, as seed 000 documents it, against /compat/trellis."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.harness import Api, snapshot

TR = "/compat/trellis"


async def call(api: Api, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None,
               data: bytes | None = None) -> tuple[int, Any]:
    payload = orjson.dumps(body) if body is not None else data
    async with api.client.request(method, TR + path, data=payload, headers=headers or {}) as resp:
        raw = await resp.read()
        parsed = orjson.loads(raw) if resp.content_type == "application/json" else raw
    return resp.status, parsed


async def register(api: Api, name: str) -> dict[str, str]:
    regtoken = await api.registration_token()
    status, reply = await call(api, "POST", "/api/workers/register",
                               {"name": name, "mode": "self-hosted"},
                               {"Authorization": f"Bearer {regtoken}"})
    assert status == 201, reply
    assert set(reply) == {"worker_id", "worker_token"}
    return {"X-Worker-ID": reply["worker_id"], "X-Worker-Token": reply["worker_token"]}


async def submit(api: Api, job_type: str) -> str:
    job = await api.submit(queue="trellis", payload={
        "job_type": job_type, "config_snapshot": {"region": "eu-west-1"},
        "vine_id": "v-1", "vineyard_id": "vy-1"})
    job_id: str = job["id"]
    return job_id


async def test_tendril_core_loop(api: Api, settings: Settings, redis: aioredis.Redis) -> None:
    tendril = await register(api, "eu-west-1-tendril")
    status, reply = await call(api, "POST", "/api/workers/heartbeat", {"version": "0.1.0"},
                               tendril)
    assert status == 200, reply
    status, _ = await call(api, "POST", "/api/jobs/claim", headers=tendril)
    assert status == 204, "an empty queue is 204 No Content"

    job_id = await submit(api, "PLAN")
    status, reply = await call(api, "POST", "/api/jobs/claim", headers=tendril)
    assert status == 200
    assert reply["job"] == {"id": job_id, "job_type": "PLAN",
                            "config_snapshot": {"region": "eu-west-1"}, "vine_id": "v-1",
                            "vineyard_id": "vy-1"}
    assert "cloud_identity" in reply

    status, _ = await call(api, "PUT", f"/api/jobs/{job_id}/status",
                           {"status": "PROCESSING"}, tendril)
    assert status == 200
    for text, stream in (("Creating VPC...\n", "STDOUT"), ("warn\n", "STDERR")):
        status, _ = await call(api, "POST", f"/api/jobs/{job_id}/logs",
                               {"log_chunk": text, "stream_type": stream}, tendril)
        assert status == 201
    status, plan = await call(api, "POST", f"/api/jobs/{job_id}/plan-artifact",
                              headers=tendril, data=b"\x00plan-bytes")
    assert status == 201, plan
    status, got = await call(api, "GET", f"/api/jobs/{job_id}/plan-artifact", headers=tendril)
    assert (status, got) == (200, b"\x00plan-bytes")

    status, logs = await call(api, "GET", f"/api/jobs/{job_id}/logs", headers=tendril)
    assert [(c["log_chunk"], c["stream_type"]) for c in logs] == [
        ("Creating VPC...\n", "STDOUT"), ("warn\n", "STDERR")]
    status, rest = await call(api, "GET", f"/api/jobs/{job_id}/logs?after={logs[0]['id']}",
                              headers=tendril)
    assert [c["log_chunk"] for c in rest] == ["warn\n"]

    outputs = {"cluster_name": "api-backend-production", "outputs": {"vpc": "vpc-12345"}}
    status, _ = await call(api, "PUT", f"/api/jobs/{job_id}/status",
                           {"status": "SUCCESS", "execution_metadata": outputs}, tendril)
    assert status == 200
    job = await api.job(job_id)
    assert job["status"] == "success" and job["outputs"] == outputs

    failing = await submit(api, "DEPLOY")
    status, reply = await call(api, "POST", "/api/jobs/claim", headers=tendril)
    assert reply["job"]["id"] == failing
    status, _ = await call(api, "PUT", f"/api/jobs/{failing}/status",
                           {"status": "FAILED", "error_message": "terraform apply failed"},
                           tendril)
    assert status == 200
    job = await api.job(failing)
    assert job["status"] == "failure" and job["error"] == "terraform apply failed"

    worker_id = tendril["X-Worker-ID"]
    status, me = await call(api, "GET", f"/api/workers/{worker_id}", headers=tendril)
    assert status == 200 and me["version"] == "0.1.0" and me["metadata"]["mode"] == "self-hosted"
    reply2 = await api.post(f"{TR}/api/workers/{worker_id}/metadata", {"deployed": "v2"})
    assert reply2.status == 200 and reply2.body["metadata"] == {"deployed": "v2"}

    token = tendril["X-Worker-Token"]
    stored = repr(await snapshot(redis, settings.namespace))
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored


async def test_tokens_stay_within_their_rights(api: Api, settings: Settings,
                                               redis: aioredis.Redis) -> None:
    one, two = await register(api, "one"), await register(api, "two")
    job_id = await submit(api, "PLAN")
    status, _ = await call(api, "POST", "/api/jobs/claim", headers=one)
    assert status == 200
    before = await snapshot(redis, settings.namespace)
    refused = [
        ("PUT", f"/api/jobs/{job_id}/status", {"status": "SUCCESS"}, two, 403),
        ("POST", f"/api/jobs/{job_id}/logs", {"log_chunk": "x"}, two, 403),
        ("PUT", f"/api/jobs/{job_id}/status", {"status": "DONE"}, one, 400),
        ("POST", f"/api/jobs/{job_id}/logs", {"log_chunk": "x", "stream_type": "OUT"}, one, 400),
        ("POST", "/api/jobs/claim", None, {**one, "X-Worker-Token": "f" * 64}, 401),
        ("POST", "/api/jobs/claim", None, {**one, "X-Worker-ID": two["X-Worker-ID"]}, 401),
        ("GET", f"/api/workers/{two['X-Worker-ID']}", None, one, 403),
        ("POST", f"/api/workers/{one['X-Worker-ID']}/metadata", {"a": 1}, one, 403),
        ("POST", "/api/workers/register", {"name": "x"}, one, 403),
        ("PUT", "/api/jobs/trellis.nope/status", {"status": "SUCCESS"}, one, 404),
    ]
    for method, path, body, headers, expected in refused:
        status, reply = await call(api, method, path, body, headers)
        assert status == expected, (path, reply)
        assert reply["error"] and reply["message"], reply
    assert await snapshot(redis, settings.namespace) == before
