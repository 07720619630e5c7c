"""Secrets over HTTP: admin routes, delivery only in the lease holder's claim, refusals, and the
value absent from every read, stream, metric, error body, API log line and Redis key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from leasehold.api.server.appkeys import SETTINGS
from tests.api.conftest import MakeApi
from tests.api.harness import Api, snapshot

KEY = "q9uG3O1kV6Q0b3nA2cM3dY1wJ8pVb5rZ0hN4tL7sE2k="
TOKEN = "tok-9f31d2a7c4e8b0561"
PASSWORD = "pw-77ac0e19b2d4f6a83"
USER = "deployer-5c2e8a"
OBJECT = {"user": USER, "password": PASSWORD, "port": 5432}
PLAINTEXTS = (TOKEN, PASSWORD, USER)


async def _api(make_api: MakeApi, **overrides: Any) -> Api:
    return await make_api(secrets_key=KEY, **overrides)


async def _store(api: Api) -> None:
    assert (await api.put("/api/secrets/deploy-token", {"value": TOKEN})).status == 204
    reply = await api.put("/api/secrets/db", {"value": OBJECT, "queues": ["deploy"]})
    assert reply.status == 204, reply.text


async def test_admin_stores_lists_and_deletes_secrets_never_reading_a_value_back(
        make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    listed = await api.get("/api/secrets")
    assert listed.status == 200
    assert [(s["name"], s["queues"]) for s in listed.body] == [
        ("db", ["deploy"]), ("deploy-token", None)]
    assert all(isinstance(s["updated_at_ms"], int) for s in listed.body)
    assert all(p not in listed.text for p in PLAINTEXTS)

    assert (await api.put("/api/secrets/deploy-token", {"value": "changed"})).status == 204
    assert (await api.delete("/api/secrets/db")).status == 204
    assert (await api.delete("/api/secrets/db")).status == 404
    assert [s["name"] for s in (await api.get("/api/secrets")).body] == ["deploy-token"]

    bad_name = await api.put("/api/secrets/no%20spaces", {"value": TOKEN})
    bad_body = await api.put("/api/secrets/x", {"value": TOKEN, "queues": "deploy"})
    bad_value = await api.put("/api/secrets/x", {"value": [TOKEN]})
    huge = await api.put("/api/secrets/x", data='{"value": {"n": 123456789012345678901234567890}}',
                         headers={"Content-Type": "application/json"})
    for reply in (bad_name, bad_body, bad_value):
        assert reply.status == 400 and TOKEN not in reply.text, reply.text
    assert huge.status == 204  # a number past 64 bits is kept as the JSON reader reads it
    assert (await api.delete("/api/secrets/x")).status == 204

    _, submitter = await api.api_token("submitter")
    for method in ("GET", "PUT", "DELETE"):
        path = "/api/secrets" if method == "GET" else "/api/secrets/deploy-token"
        body = {"value": "x"} if method == "PUT" else None
        denied = await api.call(method, path, body, token=submitter) if body else \
            await api.call(method, path, token=submitter)
        assert denied.status == 403


async def test_without_a_key_secret_routes_and_jobs_naming_secrets_answer_503(
        make_api: MakeApi, redis: aioredis.Redis) -> None:
    api = await make_api()
    for reply in (await api.put("/api/secrets/x", {"value": TOKEN}),
                  await api.put("/api/secrets/x", {"not": "even valid"}),
                  await api.get("/api/secrets"), await api.delete("/api/secrets/x")):
        assert (reply.status, reply.body["error"]) == (503, "secrets_disabled"), reply.text
        assert "LEASEHOLD_SECRETS_KEY" in reply.body["message"]
    namespace = api.app[SETTINGS].namespace
    before = await snapshot(redis, namespace)
    refused = await api.post("/api/jobs", {"command": "deploy", "secrets": ["x"]})
    assert (refused.status, refused.body["error"]) == (503, "secrets_disabled")
    assert await snapshot(redis, namespace) == before
    assert (await api.post("/api/jobs", {"command": "plain"})).status == 201


async def test_a_secret_unknown_or_not_allowed_in_the_queue_is_refused_and_nothing_stored(
        make_api: MakeApi, redis: aioredis.Redis) -> None:
    api = await _api(make_api)
    await _store(api)
    namespace = api.app[SETTINGS].namespace
    before = await snapshot(redis, namespace)
    # a bad name is a bad body (400); an unknown or unusable secret is the store's state (409)
    for body, status in (({"queue": "other", "command": "x", "secrets": ["db"]}, 409),
                         ({"queue": "deploy", "command": "x", "secrets": ["nope"]}, 409),
                         ({"queue": "deploy", "command": "x", "secrets": ["bad name!"]}, 400)):
        reply = await api.post("/api/jobs", body)
        assert reply.status == status, reply.text
    bulk = await api.post("/api/jobs/bulk", {"jobs": [
        {"queue": "other", "command": "ok", "secrets": ["deploy-token"]},
        {"queue": "other", "command": "bad", "secrets": ["db"]}]})
    assert bulk.status == 409 and "may not be used in queue other" in bulk.body["message"]
    assert await snapshot(redis, namespace) == before
    assert (await api.post("/api/jobs", {"queue": "deploy", "command": "x",
                                          "secrets": ["db", "deploy-token"]})).status == 201


async def test_only_the_lease_holders_claim_carries_the_values(make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    _, submitter_token = await api.api_token("submitter")
    _, viewer_token = await api.api_token("viewer")
    submitter, viewer = api.as_(submitter_token), api.as_(viewer_token)
    holder, other = await api.register("w-holder"), await api.register("w-other")

    submitted = await submitter.submit(queue="deploy", command="deploy",
                                       secrets=["deploy-token", "db"])
    assert submitted["secrets"] == ["db", "deploy-token"]
    claim = await holder.claim(queues=["deploy"])
    assert claim["secrets"] == {"deploy-token": TOKEN, "db": OBJECT}
    assert claim["job"]["secrets"] == ["db", "deploy-token"]
    assert await other.claim(queues=["deploy"]) is None
    job_id = submitted["id"]
    assert (await other.get(f"/api/jobs/{job_id}")).status == 403
    for reader in (api, submitter, viewer, holder):
        read = await reader.get(f"/api/jobs/{job_id}")
        assert read.status == 200 and read.body["secrets"] == ["db", "deploy-token"]
        listed = await reader.get("/api/jobs", params={"queue": "deploy"}) \
            if reader is not holder else read
        assert all(p not in read.text + listed.text for p in PLAINTEXTS)

    plain = await submitter.submit(queue="deploy", command="plain")
    assert plain.get("secrets") is None
    assert (await holder.claim(queues=["deploy"]))["secrets"] is None


async def test_batch_and_long_poll_claims_carry_the_values_too(make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    worker = await api.register("w-batch")
    for _ in range(2):
        await api.submit(queue="deploy", command="x", secrets=["deploy-token"])
    batch = await worker.claim(queues=["deploy"], max_jobs=5)
    assert [c["secrets"] for c in batch["claims"]] == [{"deploy-token": TOKEN}] * 2

    waiting = asyncio.ensure_future(worker.claim(queues=["deploy"], wait_secs=5))
    await asyncio.sleep(0.2)
    await api.submit(queue="deploy", command="x", secrets=["db"])
    assert (await waiting)["secrets"] == {"db": OBJECT}


async def test_a_job_keeps_the_value_it_was_submitted_with(make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    worker = await api.register("w-snapshot")
    await api.submit(command="x", secrets=["deploy-token"])
    assert (await api.put("/api/secrets/deploy-token", {"value": "newer"})).status == 204
    await api.submit(command="x", secrets=["deploy-token"])
    assert (await api.delete("/api/secrets/deploy-token")).status == 204
    first, second = (await worker.claim())["secrets"], (await worker.claim())["secrets"]
    assert (first, second) == ({"deploy-token": TOKEN}, {"deploy-token": "newer"})


async def _events(api: Api, seen: list[str]) -> None:
    async with api.client.get("/api/events", headers={"Authorization": f"Bearer {api.token}"},
                              params={"queue": "deploy"}) as resp:
        async for line in resp.content:
            seen.append(line.decode())


async def test_the_value_appears_nowhere_but_the_holders_claim(
        make_api: MakeApi, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as api_logs:
        api = await _api(make_api)
        seen_events: list[str] = []
        events = asyncio.ensure_future(_events(api, seen_events))
        await _store(api)
        worker = await api.register("w-leak")
        job = await api.submit(queue="deploy", command="deploy", secrets=["deploy-token", "db"],
                               metadata={"note": "no secret here"})
        claim_reply = await worker.claim_reply(queues=["deploy"])
        lease = claim_reply.body["lease"]["lease_id"]
        # the command echoes every value (no agent masking here: the server masks)
        pushed = await worker.post(f"/api/jobs/{lease}/logs", {"chunks": [
            {"data": f"token={TOKEN}\n", "stream": "stdout", "sequence": 0},
            {"data": f"login {USER}:{PASSWORD}@db\n", "stream": "stderr", "sequence": 1}]})
        assert pushed.status == 202, pushed.text
        tail = await worker.post(f"/api/jobs/{lease}/logs", {"log_chunk": f"again {TOKEN}"})
        assert tail.status == 202
        # error bodies: a lost lease, a bad body, an unknown secret
        assert (await worker.post(f"/api/jobs/{lease}x/complete", {})).status in (403, 409)
        assert (await api.post("/api/jobs", {"command": "x", "secrets": ["missing"]})).status == 409
        assert (await worker.post(f"/api/jobs/{lease}/complete", {"outputs": {}})).status == 200
        _, metrics_token = await api.api_token("metrics")
        scrape = await api.get("/metrics", token=metrics_token)
        assert scrape.status == 200
        logs = await api.get(f"/api/jobs/{job['id']}/logs")
        assert [c["data"] for c in logs.body] == [
            "token=***\n", "login ***:***@db\n", "again ***"]
        await asyncio.sleep(0.3)
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events

    holder_claims = [r for r in api.transcript if r is claim_reply]
    assert TOKEN in claim_reply.text and PASSWORD in claim_reply.text
    for reply in api.transcript:
        if reply not in holder_claims:
            assert all(p not in reply.text for p in PLAINTEXTS), reply.text
    assert any('"to":"success"' in line for line in seen_events), seen_events
    assert all(p not in "".join(seen_events) for p in PLAINTEXTS)
    api_log_text = repr(api_logs) + caplog.text
    assert "job_claimed" in api_log_text
    assert all(p not in api_log_text for p in PLAINTEXTS)
    await _assert_not_in_redis(redis_url, api.app[SETTINGS].namespace)


async def _assert_not_in_redis(redis_url: str, namespace: str) -> None:
    """Every key of the namespace, dumped and read by type, holds no plaintext."""
    raw = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        keys = [key async for key in raw.scan_iter(match=f"*{namespace}*", count=1000)]
        assert any(b"secrets" in key for key in keys)
        for key in keys:
            kind = cast(bytes, await raw.type(key)).decode()
            blobs: list[Any] = [await raw.dump(key)]
            if kind == "hash":
                blobs.append(await raw.hgetall(key))
            elif kind == "stream":
                blobs.append(await raw.xrange(key))
            elif kind == "string":
                blobs.append(await raw.get(key))
            elif kind == "zset":
                blobs.append(await raw.zrange(key, 0, -1))
            text = repr(blobs).encode()
            for plain in PLAINTEXTS:
                assert plain.encode() not in text, (key, plain)
                assert all(plain.encode() not in b for b in blobs if isinstance(b, bytes))
    finally:
        await raw.aclose()


async def test_a_failure_message_echoing_a_value_is_stored_masked(make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    worker = await api.register("w-fail")
    job = await api.submit(queue="deploy", command="x", secrets=["deploy-token", "db"],
                           retry_policy={"max_retries": 1})
    lease = (await worker.claim(queues=["deploy"]))["lease"]["lease_id"]
    failed = await worker.post(f"/api/jobs/{lease}/fail",
                               {"error": f"auth {TOKEN} refused", "retryable": True})
    assert failed.status == 200
    assert (await api.job(job["id"]))["error"] == "auth *** refused"
    lease = (await worker.claim(queues=["deploy"]))["lease"]["lease_id"]
    batch = await worker.post("/api/leases/fail", {"failures": [
        {"lease_id": lease, "error": f"{USER} / {PASSWORD}"}]})
    assert batch.status == 200 and batch.body["results"][0]["ok"]
    assert (await api.job(job["id"]))["error"] == "*** / ***"


async def test_a_workflow_job_names_secrets_like_a_submitted_one(make_api: MakeApi) -> None:
    api = await _api(make_api)
    await _store(api)
    unknown = await api.post("/api/workflows", {"name": "deploy", "queue": "deploy", "jobs": [
        {"id": "ship", "command": "ship", "secrets": ["nope"]}]})
    assert unknown.status == 409 and unknown.body["secret"] == "nope", unknown.text
    other_queue = await api.post("/api/workflows", {"name": "d", "queue": "builds", "jobs": [
        {"id": "ship", "command": "ship", "secrets": ["db"]}]})
    assert other_queue.status == 409, other_queue.text  # db is for queue deploy only
    created = await api.post("/api/workflows", data=(
        "name: deploy\nqueue: deploy\njobs:\n"
        "  build:\n    run: make\n"
        "  ship:\n    needs: build\n    run: ./ship\n    secrets: [db, deploy-token]\n"),
        headers={"Content-Type": "application/yaml"})
    assert created.status == 201, created.text
    assert (await api.post(f"/api/workflows/{created.body['id']}/run")).status == 202
    worker = await api.register("w-wf")
    first = (await worker.claim_reply(queues=["deploy"])).body
    assert first["job"]["command"] == "make" and first.get("secrets") is None
    assert (await worker.post(f"/api/jobs/{first['lease']['lease_id']}/complete",
                              {"outputs": {}})).status == 200
    second = (await worker.claim_reply(queues=["deploy"])).body
    assert second["job"]["command"] == "./ship"
    assert second["secrets"] == {"db": OBJECT, "deploy-token": TOKEN}
    assert second["job"]["secrets"] == ["db", "deploy-token"]  # a job read names, never values
    job = await api.job(second["job"]["id"])
    assert all(text not in str(job) for text in PLAINTEXTS)
