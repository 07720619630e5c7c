"""SPEC §3: each error status with its machine code, and never a traceback in a body."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.conftest import MakeApi
from tests.api.harness import ADMIN, Api, snapshot
from tests.redis_server import RedisServer

UNKNOWN_JOB = "default.AAAAAAAAAAAAAAAAAAAAAA"


async def test_400_names_the_problem_with_pydantic_details(api: Api) -> None:
    malformed = await api.post("/api/jobs", data=b'{"command": "x"',
                               headers={"Content-Type": "application/json"})
    assert malformed.status == 400 and malformed.body["error"] == "invalid_request"
    assert malformed.body["details"][0]["type"] == "json_invalid"

    wrong_type = await api.post("/api/jobs", {"command": "x", "priority": "high"})
    assert wrong_type.status == 400
    assert [d["loc"] for d in wrong_type.body["details"]] == [["priority"]]
    assert wrong_type.body["details"][0]["type"] == "int_type"  # never parsed from a string

    unknown = await api.post("/api/jobs", {"command": "x", "colour": "red"})
    assert unknown.status == 400
    assert unknown.body["details"] == [
        {"loc": ["colour"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]

    not_object = await api.post("/api/jobs/claim", [1, 2])
    assert not_object.status == 400 and not_object.body["details"]
    out_of_range = await api.get("/api/jobs", params={"limit": "0"})
    assert out_of_range.status == 400 and "limit" in out_of_range.body["message"]


async def test_401_for_missing_bad_revoked_and_deleted_tokens(api: Api) -> None:
    missing = await api.get("/api/jobs", token=None)
    assert missing.status == 401 and missing.body["error"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    bad = await api.get("/api/jobs", token="lha_not-a-real-token")
    assert bad.status == 401 and bad.body["error"] == "unauthorized"
    empty = await api.get("/api/jobs", headers={"Authorization": "Bearer "}, token=None)
    assert empty.status == 401

    token_id, viewer = await api.api_token("viewer")
    assert (await api.get("/api/jobs", token=viewer)).status == 200
    deleted = await api.delete(f"/api/tokens/{token_id}")
    assert deleted.status == 200 and deleted.body["deleted"] is True
    gone = await api.get("/api/jobs", token=viewer)
    assert gone.status == 401 and gone.body["error"] == "unauthorized"

    worker = await api.register("w-revoked")
    assert (await worker.post("/api/workers/w-revoked/heartbeat")).status == 200
    assert (await api.delete("/api/workers/w-revoked")).status == 200
    revoked = await worker.post("/api/workers/w-revoked/heartbeat")
    assert revoked.status == 401 and revoked.body["error"] == "unauthorized"


async def test_403_for_a_role_that_may_not_call_the_route(api: Api) -> None:
    _, viewer = await api.api_token("viewer")
    _, submitter = await api.api_token("submitter")
    refused = await api.post("/api/jobs", {"command": "x"}, token=viewer)
    assert refused.status == 403 and refused.body["error"] == "forbidden"
    assert "viewer" in refused.body["message"]
    assert (await api.get("/api/jobs")).body["jobs"] == []
    job = await api.submit(command="x")
    retry = await api.post(f"/api/jobs/{job['id']}/retry", token=submitter)
    assert retry.status == 403 and retry.body["error"] == "forbidden"
    claim = await api.post("/api/jobs/claim", {"worker_id": "w"}, token=submitter)
    assert claim.status == 403
    worker = await api.register("w-403")
    assert (await worker.post("/api/tokens", {"role": "admin", "name": "x"})).status == 403
    assert (await worker.post("/api/jobs/claim", {"worker_id": "someone-else"})).status == 403
    assert (await worker.get("/api/workers/someone-else")).status == 403
    register = await api.post("/api/workers/register", {"worker_id": "w2"}, token=viewer)
    assert register.status == 403 and register.body["error"] == "forbidden"


async def test_403_for_another_workers_lease_changes_nothing(
    api: Api, redis: aioredis.Redis, settings: Settings
) -> None:
    owner = await api.register("owner")
    thief = await api.register("thief")
    job = await api.submit(command="x")
    lease_id = (await owner.claim())["lease"]["lease_id"]
    before = await snapshot(redis, settings.namespace)
    attempts = [("heartbeat", {"progress": 50}), ("complete", {"outputs": {"a": 1}}),
                ("fail", {"error": "boom", "retryable": True}), ("release", None),
                ("logs", {"chunks": [{"data": "hi"}]})]
    for verb, body in attempts:
        reply = await thief.post(f"/api/jobs/{lease_id}/{verb}", *([body] if body else []))
        assert reply.status == 403, (verb, reply.text)
        assert reply.body["error"] == "not_lease_owner"
    batch = await thief.post("/api/leases/complete", {"completions": [{"lease_id": lease_id}]})
    assert batch.body["results"][0]["ok"] is False
    assert batch.body["results"][0]["error"] == "not_lease_owner"
    read = await thief.get(f"/api/jobs/{job['id']}")
    assert read.status == 403 and read.body["error"] == "forbidden"
    assert await snapshot(redis, settings.namespace) == before
    assert (await owner.get(f"/api/jobs/{job['id']}")).body["worker_id"] == "owner"


async def test_404_for_unknown_and_malformed_ids_and_routes(api: Api) -> None:
    for path in (f"/api/jobs/{UNKNOWN_JOB}", "/api/jobs/not-an-id", "/api/jobs/x"):
        reply = await api.get(path)
        assert reply.status == 404 and reply.body["error"] == "job_not_found", path
    cancel = await api.post(f"/api/jobs/{UNKNOWN_JOB}/cancel")
    assert cancel.status == 404 and cancel.body["error"] == "job_not_found"
    for method, path in (("GET", "/api/workers/ghost"), ("DELETE", "/api/workers/ghost"),
                         ("POST", "/api/workers/ghost/drain"),
                         ("POST", "/api/workers/ghost/heartbeat"),
                         ("GET", "/api/workflows/ghost/status"),
                         ("DELETE", "/api/tokens/ghost")):
        reply = await api.call(method, path)
        assert reply.status == 404, (method, path, reply.text)
    for token in (ADMIN, None):
        route = await api.get("/api/no/such/route", token=token)
        assert route.status == 404 and route.body["error"] == "not_found"


async def test_405_lists_the_allowed_methods(api: Api) -> None:
    reply = await api.delete("/api/jobs")
    assert reply.status == 405 and reply.body["error"] == "method_not_allowed"
    assert set(reply.headers["Allow"].split(",")) >= {"GET", "POST"}


async def test_409_lease_codes(api: Api) -> None:
    worker = await api.register("w409")
    await api.submit(command="x")
    short = await worker.claim(lease_ttl_secs=0.3)
    await asyncio.sleep(0.45)
    expired = await worker.post(f"/api/jobs/{short['lease']['lease_id']}/heartbeat")
    assert expired.status == 409 and expired.body["error"] == "lease_expired"
    assert "lease_id" not in expired.body

    for lease_id in ("not-a-lease", f"{UNKNOWN_JOB}.AAAAAAAAAAAAAAAAAAAAAA"):
        reply = await worker.post(f"/api/jobs/{lease_id}/complete")
        assert reply.status == 409 and reply.body["error"] == "lease_not_found", reply.text

    second = await api.submit(command="y")
    first_lease = (await worker.claim())["lease"]
    assert first_lease["job_id"] == second["id"]
    assert (await worker.post(f"/api/jobs/{first_lease['lease_id']}/release")).body == {"ok": True}
    newer = await worker.claim()
    assert newer["lease"]["job_id"] == second["id"] and newer["job"]["attempt"] == 0
    superseded = await worker.post(f"/api/jobs/{first_lease['lease_id']}/heartbeat")
    assert superseded.status == 409 and superseded.body["error"] == "lease_superseded"

    cancelled = await api.post(f"/api/jobs/{second['id']}/cancel")
    assert cancelled.status == 202
    assert cancelled.body == {"id": second["id"], "status": "cancelled",
                              "previous_status": "running"}
    beat = await worker.post(f"/api/jobs/{newer['lease']['lease_id']}/heartbeat")
    assert beat.status == 200 and beat.body["cancelled"] is True
    refused = await worker.post(f"/api/jobs/{newer['lease']['lease_id']}/complete")
    assert refused.status == 409 and refused.body["error"] == "job_cancelled"

    third = await api.submit(command="z")
    lease = (await worker.claim())["lease"]
    running_retry = await api.post(f"/api/jobs/{third['id']}/retry")
    assert running_retry.status == 409 and running_retry.body["error"] == "invalid_state"
    assert (await worker.post(f"/api/jobs/{lease['lease_id']}/complete")).status == 200
    twice = await worker.post(f"/api/jobs/{lease['lease_id']}/fail", {"error": "late"})
    assert twice.status == 409 and twice.body["error"] == "job_finished"


async def test_409_for_a_worker_id_held_by_another_live_worker(api: Api) -> None:
    await api.register("taken")
    regtoken = await api.registration_token()
    reply = await api.post("/api/workers/register", {"worker_id": "taken"}, token=regtoken)
    assert reply.status == 409 and reply.body["error"] == "conflict"
    assert "another live worker" in reply.body["message"]
    unused = await api.post("/api/workers/register", {"worker_id": "free"}, token=regtoken)
    assert unused.status == 201  # the refused attempt did not use the one-time token up


async def test_413_for_a_body_over_the_limit(make_api: MakeApi) -> None:
    small = await make_api(max_body_bytes=2048)
    reply = await small.post("/api/jobs", {"command": "x" * 10 * 1024})
    assert reply.status == 413 and reply.body["error"] == "body_too_large"
    assert (await small.get("/api/jobs")).body["jobs"] == []
    assert (await small.post("/api/jobs", {"command": "x" * 1024})).status == 201


async def test_503_with_retry_after_when_redis_is_down(
    make_api: MakeApi, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")
    try:
        api = await make_api(redis_url=server.url)
        job = await api.submit(command="x")
        _, viewer = await api.api_token("viewer")
    finally:
        server.stop()
    replies = [await api.get(f"/api/jobs/{job['id']}"),
               await api.post("/api/jobs", {"command": "x"}),
               await api.get("/api/jobs", token=viewer), await api.get("/readyz", token=None)]
    for reply in replies:
        assert reply.status == 503, reply.text
        assert reply.body["error"] == "unavailable"
        assert reply.headers["Retry-After"].isdigit()
        assert "redis://" not in reply.text and "Error" not in reply.text
