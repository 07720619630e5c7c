"""Result modes of a submit: sync answers with the finished job, stream sends logs then the job,
webhook URLs that point inside the network are refused at submit."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from leasehold.scheduler import webhooks
from tests.api.harness import Api


async def _finish_soon(api: Api, worker_id: str, logs: list[str] | None = None) -> None:
    worker = await api.register(worker_id)
    claim: Any = None
    while not claim:
        claim = await worker.claim(worker_id, queues=["modes"])
        await asyncio.sleep(0.02)
    lease = claim["lease"]["lease_id"]
    if logs:
        await worker.post(f"/api/jobs/{lease}/heartbeat", {"progress": 50, "message": "half"})
        chunks = [{"data": line, "stream": "stdout"} for line in logs]
        assert (await worker.post(f"/api/jobs/{lease}/logs", {"chunks": chunks})).status == 202
    assert (await worker.post(f"/api/jobs/{lease}/complete",
                              {"outputs": {"n": 1}})).status == 200


async def test_sync_replies_with_the_finished_job(api: Api) -> None:
    finisher = asyncio.create_task(_finish_soon(api, "w-sync"))
    reply = await api.post("/api/jobs", {"command": "x", "queue": "modes",
                                         "result": {"mode": "sync", "timeout_secs": 10}})
    await finisher
    assert reply.status == 200, reply.text
    assert reply.body["status"] == "success" and reply.body["outputs"] == {"n": 1}


async def test_sync_answers_202_with_the_job_when_the_timeout_passes(api: Api) -> None:
    reply = await api.post("/api/jobs", {"command": "x", "queue": "modes",
                                         "result": {"mode": "sync", "timeout_secs": 0.2}})
    assert reply.status == 202 and reply.body["status"] == "queued"


async def test_async_is_the_default_and_the_wait_query_still_works(api: Api) -> None:
    reply = await api.post("/api/jobs", {"command": "x", "result": {"mode": "async"}})
    assert reply.status == 201 and reply.body["status"] == "queued"
    reply = await api.post("/api/jobs", {"command": "x"}, params={"wait_secs": "0.1"})
    assert reply.status == 201


async def test_stream_sends_logs_and_progress_then_end_with_the_job(api: Api) -> None:
    finisher = asyncio.create_task(_finish_soon(api, "w-stream", ["one\n", "two\n"]))
    async with api.client.post("/api/jobs", data=orjson.dumps(
            {"command": "x", "queue": "modes", "result": {"mode": "stream"}}),
            headers={"Authorization": f"Bearer {api.token}",
                     "Content-Type": "application/json"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await asyncio.wait_for(resp.read(), 20)).decode()
    await finisher
    events = [block for block in text.replace("\r\n", "\n").split("\n\n") if "event:" in block]
    kinds = [next(line[7:] for line in e.splitlines() if line.startswith("event: "))
             for e in events]
    logs = [orjson.loads(e.split("data: ", 1)[1])["data"] for e, k in zip(events, kinds,
                                                                         strict=True) if k == "log"]
    assert logs == ["one\n", "two\n"]
    assert kinds[-1] == "end" and "progress" in kinds
    assert kinds.index("end") > max(i for i, k in enumerate(kinds) if k == "log")
    job = orjson.loads(events[-1].split("data: ", 1)[1])
    assert job["status"] == "success" and job["outputs"] == {"n": 1}


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1/", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://localhost:8080/hook", "loopback"),
    ("ftp://example.com/", "http"),
])
async def test_webhook_urls_inside_the_network_are_refused_at_submit(
        api: Api, url: str, why: str) -> None:
    reply = await api.post("/api/jobs", {"command": "x", "result": {
        "mode": "webhook", "webhook": {"url": url}}})
    assert reply.status == 400 and reply.body["error"] == "webhook_refused", reply.text
    assert why in reply.body["message"]
    listed = await api.get("/api/jobs")
    assert listed.body["jobs"] == []


async def test_a_name_resolving_to_a_private_address_is_refused(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def private(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]  # one public, one private: refused

    monkeypatch.setattr(webhooks, "lookup", private)
    reply = await api.post("/api/jobs", {"command": "x", "result": {
        "mode": "webhook", "webhook": {"url": "https://hooks.example.com/x"}}})
    assert reply.status == 400 and "10.1.2.3" in reply.body["message"]

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    monkeypatch.setattr(webhooks, "lookup", public)
    reply = await api.post("/api/jobs", {"command": "x", "result": {
        "mode": "webhook", "webhook": {"url": "https://hooks.example.com/x",
                                       "headers": {"X-Team": "ops"}}}})
    assert reply.status == 201 and reply.body["webhook_deliveries"] == []
    bad = await api.post("/api/jobs", {"command": "x", "result": {
        "mode": "webhook", "webhook": {"url": "https://hooks.example.com/x",
                                       "headers": {"Host": "evil"}}}})
    assert bad.status == 400
