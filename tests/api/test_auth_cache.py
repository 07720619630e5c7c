"""Tokens are checked in Redis once and remembered briefly: a worker's complete-and-claim then
costs one Redis script, while a revoke, a drain, a label change or a re-registration still takes
effect on the very next request."""

from __future__ import annotations

from typing import Any

from leasehold.api.server.appkeys import SERVICES
from tests.api.harness import Api


async def test_complete_with_next_is_one_redis_command(api: Api) -> None:
    worker = await api.register("w-one-trip")
    for i in range(3):
        await api.submit(command=str(i), queue="ac1")
    claim = await worker.claim(queues=["ac1"])  # the token is remembered from here on
    client: Any = api.app[SERVICES].redis
    sent: list[str] = []
    original = client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await original(*args, **options)

    client.execute_command = counted
    try:
        reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                                  {"next": {}})
    finally:
        client.execute_command = original
    assert reply.status == 200 and reply.body["next"] is not None
    assert sent == ["EVALSHA"], sent


async def test_a_revoked_worker_is_refused_on_the_next_request(api: Api) -> None:
    worker = await api.register("w-gone")
    assert (await worker.claim(queues=["ac2"])) is None
    assert (await api.delete("/api/workers/w-gone")).status == 200
    assert (await worker.claim_reply(queues=["ac2"])).status == 401


async def test_a_label_change_applies_to_the_next_claim(api: Api) -> None:
    worker = await api.register("w-relabel", labels=["cpu"])
    assert (await worker.claim_reply(labels=["gpu"], queues=["ac3"])).status == 403
    assert (await api.call("PATCH", "/api/workers/w-relabel", {"labels": ["gpu"]})).status == 200
    assert (await worker.claim_reply(labels=["gpu"], queues=["ac3"])).status == 200


async def test_a_drained_worker_gets_no_job_on_the_next_claim(api: Api) -> None:
    worker = await api.register("w-drain-cache")
    assert (await worker.claim(queues=["ac4"])) is None
    assert (await api.post("/api/workers/w-drain-cache/drain")).status == 200
    job = await api.submit(command="x", queue="ac4")
    assert (await worker.claim(queues=["ac4"])) is None
    assert (await api.job(job["id"]))["status"] == "queued"
    assert (await api.post("/api/workers/w-drain-cache/undrain")).status == 200
    assert (await worker.claim(queues=["ac4"]))["job"]["id"] == job["id"]


async def test_a_replaced_registration_refuses_the_old_token(api: Api) -> None:
    old = await api.register("w-again")
    assert (await old.claim(queues=["ac5"])) is None
    new = await old.post("/api/workers/register", {"worker_id": "w-again"})
    assert new.status == 201, new.text
    assert (await old.claim_reply(queues=["ac5"])).status == 401
    assert (await api.as_(new.body["worker_token"]).claim_reply(queues=["ac5"])).status == 200


async def test_a_deleted_api_token_is_refused_on_the_next_request(api: Api) -> None:
    token_id, token = await api.api_token("viewer")
    assert (await api.as_(token).get("/api/queues")).status == 200
    assert (await api.delete(f"/api/tokens/{token_id}")).status == 200
    assert (await api.as_(token).get("/api/queues")).status == 401
