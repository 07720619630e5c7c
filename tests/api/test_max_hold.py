"""LEASEHOLD_MAX_HOLD_SECS: no request is held open longer, whatever wait it asks for."""

from __future__ import annotations

import time

from tests.api.conftest import MakeApi


async def test_waits_and_streams_end_when_the_hold_passes(make_api: MakeApi) -> None:
    api = await make_api(max_hold_secs=0.5)
    worker = await api.register("holder")
    started = time.monotonic()
    assert await worker.claim(wait_secs=20) is None  # an empty claim: the worker asks again
    assert time.monotonic() - started < 3

    started = time.monotonic()
    sync = await api.post("/api/jobs", {"command": "slow", "result": {"mode": "sync",
                                                                      "timeout_secs": 60}})
    assert sync.status == 202 and sync.body["status"] == "queued", sync.text
    assert time.monotonic() - started < 3

    job = await api.submit(command="tailed")
    started = time.monotonic()
    async with api.client.get(f"/api/jobs/{job['id']}/logs/stream",
                              headers={"Authorization": f"Bearer {api.token}"}) as stream:
        assert stream.status == 200
        text = (await stream.read()).decode()  # the server ends the body
    assert time.monotonic() - started < 5
    assert "event: reconnect" in text


async def test_without_a_hold_a_claim_waits_as_asked(make_api: MakeApi) -> None:
    api = await make_api()
    worker = await api.register("patient")
    started = time.monotonic()
    assert await worker.claim(wait_secs=1.2) is None
    assert time.monotonic() - started >= 1.1
