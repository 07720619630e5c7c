"""Slow SSE consumers (F17): a viewer that stops reading is cut off instead of holding the
server's memory or anyone else's events, and resumes with ``Last-Event-ID`` without a gap or a
duplicate."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from leasehold.api.fleet.client import LeaseholdClient
from tests.chaos.fleet import Lab
from tests.chaos.scenario import start

pytestmark = pytest.mark.timeout(60)
JOBS = 5000  # 15,000 events of a long queue name: more than the kernel's socket buffers
LINES, LINE = 2400, 4000  # 9.6 MB of log lines, for the same reason


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: str


def parse_events(raw: bytes) -> list[SseEvent]:
    """Complete events of an SSE body (a cut-off tail is dropped)."""
    text = raw.decode(errors="replace").replace("\r\n", "\n")
    body = text.split("\n\n", 1)[1] if text.startswith("HTTP/") else text
    return [event for block in body.split("\n\n")[:-1] if (event := _event(block))]


def _event(block: str) -> SseEvent | None:
    fields: dict[str, str] = {}
    for line in block.split("\n"):
        name, sep, value = line.partition(": ")
        if sep and not line.startswith(":"):
            fields[name] = value
    if "event" not in fields:
        return None
    return SseEvent(fields.get("id"), fields["event"], fields.get("data", ""))


class StalledViewer:
    """An SSE client on a raw socket with a tiny receive window that reads nothing until told."""

    def __init__(self, url: str, path: str, token: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n".encode())

    def drain(self, idle_secs: float = 3.0) -> tuple[bytes, bool]:
        """Everything buffered, and whether the server had closed the stream."""
        self.sock.settimeout(idle_secs)
        data = bytearray()
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
            return bytes(data), True
        except ConnectionResetError:
            return bytes(data), True
        except TimeoutError:
            return bytes(data), False
        finally:
            self.sock.close()


async def _read_sse(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                    until: Any) -> list[SseEvent]:
    events: list[SseEvent] = []
    pending = ""
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_any():
            pending += chunk.decode().replace("\r\n", "\n")
            *blocks, pending = pending.split("\n\n")
            events.extend(event for block in blocks if (event := _event(block)))
            if until(events):
                break
    return events


async def _flood(admin: LeaseholdClient, queue: str, count: int) -> None:
    """Leases and completes ``count`` queued jobs in batches (two transitions each)."""
    done = 0
    await admin.register([], worker_id="flood")
    while done < count:
        reply = await admin.request("POST", "/api/jobs/claim", {
            "worker_id": "flood", "queues": [queue], "max_jobs": 100, "wait_secs": 5})
        await admin.request("POST", "/api/leases/complete", {"completions": [
            {"lease_id": c["lease"]["lease_id"]} for c in reply["claims"]]})
        done += len(reply["claims"])


async def test_a_stalled_events_viewer_is_cut_off_and_others_get_every_event(lab: Lab) -> None:
    sc = await start(lab, queue="q" * 64)
    url = sc.servers[0]
    token = sc.fleet.admin_token
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/events?queue={sc.queue}"
    stalled = StalledViewer(url, path, token)
    async with aiohttp.ClientSession() as session, sc.fleet.client(url) as admin:
        fast = asyncio.create_task(_read_sse(session, url + path, headers,
                                             lambda events: len(events) >= 3 * JOBS))
        await asyncio.sleep(0.3)  # both subscribed
        async with sc.producer() as producer:
            for _ in range(JOBS // 1000):
                await producer.bulk(1000)
        await _flood(admin, sc.queue, JOBS)
        started = time.monotonic()
        assert (await admin.request("GET", "/healthz")) == {"status": "ok"}
        assert time.monotonic() - started < 1.0  # the stalled viewer holds nobody up
        received = await asyncio.wait_for(fast, 20)
        data, closed = await asyncio.to_thread(stalled.drain)
        report = await sc.verdict()

    assert report.counts["ok"] == JOBS
    assert closed, "the stalled viewer was not cut off"
    assert len(parse_events(data)) < 3 * JOBS
    stream = sorted(sc.tail.transitions(), key=lambda t: t.order)
    assert [e.id for e in received] == [t.entry_id for t in stream]  # no gap, no duplicate
    first = orjson.loads(received[0].data)
    assert first["queue"] == sc.queue and first["to"] == "queued"


async def test_a_stalled_log_viewer_resumes_with_last_event_id(lab: Lab) -> None:
    sc = await start(lab)
    url = sc.servers[0]
    token = sc.fleet.admin_token
    async with sc.producer() as producer:
        submit = await producer.submit()
    assert submit.job_id
    path = f"/api/jobs/{submit.job_id}/logs/stream"
    stalled = StalledViewer(url, path, token)
    async with sc.fleet.client(url) as admin:
        await asyncio.sleep(0.3)  # the viewer subscribes
        await admin.register([], worker_id="logger")
        claim = await admin.request("POST", "/api/jobs/claim", {
            "worker_id": "logger", "queues": [sc.queue]})
        lease = claim["lease"]["lease_id"]
        for start_at in range(0, LINES, 200):
            await admin.request("POST", f"/api/jobs/{lease}/logs", {"chunks": [
                {"data": f"line {n:05d} " + "x" * LINE, "sequence": n}
                for n in range(start_at, start_at + 200)]})
        await admin.request("POST", f"/api/jobs/{lease}/complete", {})
        data, closed = await asyncio.to_thread(stalled.drain)
        before = [e for e in parse_events(data) if e.event == "log"]
        assert closed and before and len(before) < LINES, len(before)

        async with aiohttp.ClientSession() as session:
            rest = await _read_sse(session, url + path, {
                "Authorization": f"Bearer {token}", "Last-Event-ID": str(before[-1].id)},
                lambda events: any(e.event == "end" for e in events))
        report = await sc.verdict()

    assert report.counts["ok"] == 1
    texts = [orjson.loads(e.data)["data"] for e in before + rest if e.event == "log"]
    assert texts == [f"line {n:05d} " + "x" * LINE for n in range(LINES)]
    assert rest[-1].event == "end" and orjson.loads(rest[-1].data) == {"status": "success"}
