"""Webhook delivery: the finished job is POSTed signed, a 500 is retried with backoff, each
attempt is recorded on the job, and a delivery to a refused address is recorded, not sent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from leasehold.api.cli.webhooks import Deliverer
from leasehold.api.server.appkeys import SERVICES
from tests.api.conftest import MakeApi
from tests.api.harness import Api

SECRET = "test-webhook-secret"


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver([500])
    app = web.Application()
    app.router.add_post("/hook", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hooks.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hooks
    finally:
        await runner.cleanup()


async def _finish(api: Api, job_id: str, worker_id: str) -> None:
    worker = await api.register(worker_id)
    claim = await worker.claim(worker_id, queues=["hooks"])
    assert claim["job"]["id"] == job_id
    assert (await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {"outputs": {"big": 12345678901234567890}})).status == 200


async def _deliver_until(deliverer: Deliverer, done: Any, within: float = 10) -> None:
    async with deliverer.session() as session:
        for _ in range(int(within / 0.05)):
            await deliverer.pass_once(session)
            if done():
                return
            await asyncio.sleep(0.05)
    raise AssertionError("deliveries did not finish")


async def test_a_finished_job_is_posted_signed_and_a_500_is_retried(
        make_api: MakeApi, receiver: Receiver) -> None:
    api = await make_api(webhook_allow_private=True, webhook_secret=SECRET,
                         webhook_retry_base_secs=0.05)
    job = (await api.post("/api/jobs", {"command": "x", "queue": "hooks", "result": {
        "mode": "webhook", "webhook": {"url": receiver.url, "headers": {"X-Team": "ops"}}}})).body
    services = api.app[SERVICES]
    deliverer = Deliverer(services.scheduler, services.scheduler.settings)
    async with deliverer.session() as session:
        assert await deliverer.pass_once(session) == 0  # nothing is due before the job ends
    await _finish(api, job["id"], "w-hook")
    await _deliver_until(deliverer, lambda: len(receiver.received) >= 2)

    assert len(receiver.received) == 2  # once per attempt: the 500, then the 200
    for body, headers in receiver.received:
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Leasehold-Signature"] == want
        assert headers["X-Team"] == "ops"
        sent = orjson.loads(body)
        assert sent["id"] == job["id"] and sent["status"] == "success"
    assert b"12345678901234567890" in receiver.received[0][0]  # outputs kept exactly
    deliveries = (await api.job(job["id"]))["webhook_deliveries"]
    assert [(d["attempt"], d.get("status_code")) for d in deliveries] == [(1, 500), (2, 200)]
    assert all(d["at_ms"] > 0 for d in deliveries)
    async with deliverer.session() as session:
        assert await deliverer.pass_once(session) == 0
    assert len(receiver.received) == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_delivery_rechecks_the_address_and_gives_up_after_max_attempts(
        make_api: MakeApi, receiver: Receiver, host: str) -> None:
    api = await make_api(webhook_allow_private=True, webhook_secret=SECRET,
                         webhook_retry_base_secs=0.01, webhook_max_attempts=2)
    job = (await api.post("/api/jobs", {"command": "x", "queue": "hooks", "result": {
        "mode": "webhook", "webhook": {"url": receiver.url.replace("127.0.0.1", host)}}})).body
    await _finish(api, job["id"], "w-strict")
    settings = api.app[SERVICES].scheduler.settings.model_copy(
        update={"webhook_allow_private": False})
    deliverer = Deliverer(api.app[SERVICES].scheduler, settings)

    async def attempts() -> int:
        return len((await api.job(job["id"]))["webhook_deliveries"])

    async with deliverer.session() as session:
        for _ in range(100):
            await deliverer.pass_once(session)
            if await attempts() == 2:
                break
            await asyncio.sleep(0.02)
    deliveries = (await api.job(job["id"]))["webhook_deliveries"]
    assert [d["attempt"] for d in deliveries] == [1, 2]
    assert all("loopback" in d["error"] and d.get("status_code") is None for d in deliveries)
    assert receiver.received == []
