"""An Andera caller, as seed 002 documents it, against /compat/andera; Leasehold workers run it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.harness import ADMIN, Api, snapshot

AN = "/compat/andera"
KEY = {"Authorization": ADMIN}  # the key, bare: Andera sends no "Bearer"


async def call(api: Api, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    async with api.client.request(method, AN + path, data=data, headers=headers or {}) as resp:
        raw = await resp.read()
        parsed = orjson.loads(raw) if resp.content_type == "application/json" else raw.decode()
    return resp.status, parsed


async def run_one(worker: Api, outputs: dict[str, Any] | None = None,
                  error: str | None = None) -> dict[str, Any]:
    """A Leasehold worker with label fn:hello takes the task and finishes it."""
    for _ in range(200):
        claim = (await worker.post("/api/jobs/claim", {"queues": ["andera"]})).body
        if claim is not None:
            lease = claim["lease"]["lease_id"]
            await worker.post(f"/api/jobs/{lease}/heartbeat", {"progress": 50})
            await worker.post(f"/api/jobs/{lease}/logs",
                              {"chunks": [{"data": "hi\n", "stream": "stdout"}]})
            if error is None:
                await worker.post(f"/api/jobs/{lease}/complete", {"outputs": outputs or {}})
            else:
                await worker.post(f"/api/jobs/{lease}/fail", {"error": error})
            job: dict[str, Any] = claim["job"]
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("no task arrived")


HELLO = {"function": "hello", "input": {"name": "Andera"}, "contract": 1, "priority": 1,
         "mode": "sync"}


async def test_sync_task_runs_on_a_worker_and_answers_its_result(api: Api) -> None:
    worker = await api.register("andera-w", ["fn:hello"])
    status, health = await call(api, "GET", "/health")
    assert (status, health) == (200, {"status": "ok"})
    ran = asyncio.create_task(run_one(worker, {"greeting": "Hello Andera"}))
    status, reply = await call(api, "POST", "/task", HELLO, KEY)
    job = await ran
    assert status == 200, reply
    assert reply["result"] == {"greeting": "Hello Andera"} and reply["status"] == "success"
    assert job["payload"] == {"function": "hello", "input": {"name": "Andera"}, "contract": 1}
    assert job["required_labels"] == ["fn:hello"] and job["queue"] == "andera"
    assert job["priority"] == 1
    listed = await api.get("/api/jobs", params={"queue": "andera"})
    assert [j["id"] for j in listed.body["jobs"]] == [reply["id"]]

    ran = asyncio.create_task(run_one(worker, error="boom"))
    status, reply = await call(api, "POST", "/task", HELLO, KEY)
    await ran
    assert status == 200 and reply["status"] == "failure" and reply["error"] == "boom"

    status, reply = await call(api, "GET", "/logs", headers=KEY)
    assert status == 200 and any("success" in line for line in reply["logs"])
    status, reply = await call(api, "GET", "/health", headers=KEY)
    assert reply["queue"]["queue"] == "andera"


async def test_stream_and_webhook_modes(api: Api) -> None:
    worker = await api.register("andera-s", ["fn:hello"])
    ran = asyncio.create_task(run_one(worker, {"n": 1}))
    status, text = await call(api, "POST", "/task", {**HELLO, "mode": "stream"}, KEY)
    await ran
    assert status == 200 and "event: log" in text and "event: end" in text
    status, reply = await call(api, "POST", "/task", {
        **HELLO, "mode": "webhook", "webhook": {"url": "http://127.0.0.1:9/hook"}}, KEY)
    assert status in (202, 400), reply  # a private address is refused unless allowed


async def test_maintenance_and_bad_input_change_nothing(api: Api, settings: Settings,
                                                        redis: aioredis.Redis) -> None:
    status, reply = await call(api, "POST", "/off", headers=KEY)
    assert status == 200 and reply == {"status": "maintenance"}
    status, reply = await call(api, "POST", "/task", HELLO, KEY)
    assert status == 503 and reply["error"] == "unavailable"
    _, health = await call(api, "GET", "/health")
    assert health == {"status": "maintenance"}
    status, _ = await call(api, "POST", "/on", headers=KEY)
    assert status == 200
    _, viewer = await api.api_token("viewer")
    before = await snapshot(redis, settings.namespace)
    refused = [
        ({k: v for k, v in HELLO.items() if k != "function"}, KEY, 400),
        ({**HELLO, "priority": 0}, KEY, 400),
        ({**HELLO, "mode": "push"}, KEY, 400),
        ({**HELLO, "mode": "webhook"}, KEY, 400),
        ({**HELLO, "group": "no such/group"}, KEY, 400),
        (HELLO, {}, 401),
        (HELLO, {"Authorization": "wrong"}, 401),
        (HELLO, {"Authorization": viewer}, 403),
    ]
    for body, headers, expected in refused:
        status, reply = await call(api, "POST", "/task", body, headers)
        assert status == expected, (body, reply)
        assert reply["error"] and reply["message"]
    status, _ = await call(api, "POST", "/off", headers={"Authorization": viewer})
    assert status == 403
    assert await snapshot(redis, settings.namespace) == before
