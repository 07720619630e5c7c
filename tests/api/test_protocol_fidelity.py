"""Submit needs something to run; seed 000 stream types in any case; events carry integers."""

from __future__ import annotations

import asyncio

from tests.api.harness import Api
from tests.api.test_log_routes import events_of


async def test_a_job_with_neither_command_nor_payload_is_400(api: Api) -> None:
    empty = await api.post("/api/jobs", {"queue": "default", "priority": 5})
    assert empty.status == 400 and empty.body["error"] == "invalid_argument"
    assert "command or a payload" in empty.body["message"]
    bulk = await api.post("/api/jobs/bulk", {"jobs": [{"command": "true"}, {"priority": 1}]})
    assert bulk.status == 400 and "jobs[1]" in bulk.body["message"]
    assert (await api.get("/api/jobs")).body["jobs"] == []  # nothing was stored
    assert (await api.post("/api/jobs", {"payload": {"x": 1}})).status == 201
    assert (await api.post("/api/jobs", {"payload": None, "command": "true"})).status == 201


async def test_seed_000_stream_types_are_accepted_in_capitals(api: Api) -> None:
    worker = await api.register("wl")
    await api.submit(command="true")
    lease = (await worker.claim())["lease"]["lease_id"]
    for stream in ("STDOUT", "STDERR", "SYSTEM", "Stderr"):
        pushed = await worker.post(f"/api/jobs/{lease}/logs",
                                   {"log_chunk": f"{stream}\n", "stream_type": stream})
        assert pushed.status == 202, pushed.text
    pushed = await worker.post(f"/api/jobs/{lease}/logs",
                               {"chunks": [{"data": "x\n", "stream": "STDERR"}]})
    assert pushed.status == 202, pushed.text
    bad = await worker.post(f"/api/jobs/{lease}/logs", {"log_chunk": "x", "stream_type": "TTY"})
    assert bad.status == 400
    job_id = lease.rsplit(".", 1)[0]
    chunks = (await api.get(f"/api/jobs/{job_id}/logs")).body
    assert [c["stream"] for c in chunks] == ["stdout", "stderr", "system", "stderr", "stderr"]


async def test_the_events_stream_uses_the_job_objects_types(api: Api) -> None:
    async with api.client.get("/api/events", params={"queue": "default"},
                              headers={"Authorization": f"Bearer {api.token}"}) as resp:
        assert resp.status == 200
        events = events_of(resp)
        await asyncio.sleep(0.2)
        job = await api.submit(command="true")
        event = await asyncio.wait_for(anext(events), 5)
        body = event.json()
        assert body["job"] == job["id"] and body["to"] == "queued"
        assert body["attempt"] == 0 and isinstance(body["t"], int)
        assert body["t"] == job["enqueued_at_ms"]
