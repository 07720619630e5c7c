"""Benchmark: 1,000 SSE viewers of one job's log on one API process.

Target (the log-streaming issue): a handful of Redis connections, and a chunk reaches 99% of the
viewers within 100 ms. Each chunk carries its push time (``perf_counter``); a viewer's latency
for it is its arrival time minus that, so it covers the whole path: the push request, the Lua
append, the hub's one XREAD, the fan-out through bounded queues, the SSE write, and the viewer's
own parsing. The viewers share this process and event loop with the server (and pytest), so
their parsing and their objects count against the server: a stricter setting than production.

Full (generation 2) garbage collections pause the whole process; they are recorded while the
chunks flow, so a late chunk can be told apart from slow fan-out.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from leasehold.api.app import create_app
from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.config import Settings
from tests.redis_server import RedisServer

VIEWERS = 1000
CHUNKS = 200
SPACING_SECS = 0.05
TARGET_MS = 100.0
RESULTS = Path(__file__).parent / "results" / "log_fanout.json"


class Viewer:
    """One SSE client: records when each chunk (by number) arrived, and the end event."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.warm = asyncio.Event()
        self.ended = False

    async def watch(self, http: aiohttp.ClientSession, path: str) -> None:
        async with http.get(path) as resp:
            assert resp.status == 200
            buffer = b""
            async for data in resp.content.iter_any():
                now = time.perf_counter()
                buffer += data
                *events, buffer = buffer.split(b"\r\n\r\n")
                for event in events:
                    self._on_event(event, now)
                if self.ended:
                    return

    def _on_event(self, event: bytes, now: float) -> None:
        if b"event: end" in event:
            self.ended = True
            return
        for line in event.split(b"\r\n"):
            if line.startswith(b"data: "):
                number = json.loads(line[6:])["data"].split(" ")[0]
                if number == "warmup":
                    self.warm.set()
                else:
                    self.arrivals[int(number)] = now


class FullCollections:
    """Generation-2 collections (start, milliseconds) while recording."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, (time.perf_counter() - self._started) * 1000))


async def _redis_clients(probe: aioredis.Redis) -> int:
    info: dict[str, Any] = await probe.info("clients")
    return int(info["connected_clients"]) - 1  # not counting the probe itself


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@pytest.mark.load
async def test_one_job_watched_by_a_thousand_viewers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    settings = Settings(redis_url=server.url, auth=False, namespace="fanout")
    app = create_app(settings)
    api = TestServer(app)
    await api.start_server()
    probe = aioredis.Redis.from_url(server.url)
    sent: dict[int, float] = {}
    connections: list[int] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(base_url=str(api.make_url("/")), connector=connector,
                                         timeout=timeout) as http:
            async with http.post("/api/jobs", json={"command": "build"}) as resp:
                job_id = (await resp.json())["id"]
            async with http.post("/api/workers/register", json={"worker_id": "w"}) as resp:
                assert resp.status == 201
            async with http.post("/api/jobs/claim", json={
                    "worker_id": "w", "labels": [], "lease_ttl_secs": 600}) as resp:
                lease_id = (await resp.json())["lease"]["lease_id"]
            before_viewers = await _redis_clients(probe)

            async def push(text: str, sequence: int) -> None:
                body = {"chunks": [{"data": text, "sequence": sequence}]}
                async with http.post(f"/api/jobs/{lease_id}/logs", json=body) as resp:
                    assert resp.status == 202

            viewers = [Viewer() for _ in range(VIEWERS)]
            path = f"/api/jobs/{job_id}/logs/stream"
            started = time.perf_counter()
            tasks = [asyncio.create_task(v.watch(http, path)) for v in viewers]
            # each viewer is subscribed once it has seen a chunk pushed after it connected
            await asyncio.sleep(1)
            await push("warmup 0", 0)
            await asyncio.wait_for(asyncio.gather(*(v.warm.wait() for v in viewers)), 60)
            connect_secs = time.perf_counter() - started
            hub = app[SERVICES].hub
            streams, readers = hub.streams, hub.connections

            with FullCollections() as collections:
                for n in range(CHUNKS):
                    sent[n] = time.perf_counter()
                    await push(f"{n} {sent[n]}", n + 1)
                    if n % 20 == 0:
                        connections.append(await _redis_clients(probe))
                    await asyncio.sleep(SPACING_SECS)
                for _ in range(200):  # up to 10 s for the stragglers
                    if sum(len(v.arrivals) for v in viewers) == VIEWERS * CHUNKS:
                        break
                    await asyncio.sleep(0.05)
            async with http.post(f"/api/jobs/{lease_id}/complete", json={}) as resp:
                assert resp.status == 200
            _, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                task.cancel()
            ended = sum(v.ended for v in viewers)
    finally:
        await probe.aclose()
        await api.close()
        server.stop()

    latencies = sorted((at - sent[n]) * 1000 for v in viewers for n, at in v.arrivals.items())
    reach: dict[int, float] = {}  # per chunk: by when 99% of the viewers had it
    for n in range(CHUNKS):
        got = sorted((v.arrivals[n] - sent[n]) * 1000 for v in viewers if n in v.arrivals)
        reach[n] = _percentile(got, 0.99) if len(got) >= 0.99 * VIEWERS else float("inf")
    late = [n for n, ms in reach.items() if ms > TARGET_MS]
    # a late chunk was in flight during a full collection when the pause began before it arrived
    late_in_gc = [n for n in late if any(
        sent[n] - 0.001 * TARGET_MS <= start <= sent[n] + reach[n] / 1000
        for start, _ in collections.pauses)]
    missing = VIEWERS * CHUNKS - len(latencies)
    report: dict[str, object] = {
        "viewers": VIEWERS,
        "chunks": CHUNKS,
        "spacing_ms": SPACING_SECS * 1000,
        "viewers_connected_secs": round(connect_secs, 2),
        "deliveries": len(latencies),
        "deliveries_missing": missing,
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p90": round(_percentile(latencies, 0.90), 2),
        "latency_ms_p99": round(_percentile(latencies, 0.99), 2),
        "latency_ms_max": round(latencies[-1], 2),
        "fraction_of_deliveries_within_100ms": round(
            sum(1 for ms in latencies if ms <= TARGET_MS) / (VIEWERS * CHUNKS), 4),
        "chunk_reaches_99pct_of_viewers_ms_p50": round(statistics.median(reach.values()), 2),
        "chunk_reaches_99pct_of_viewers_ms_max": round(max(reach.values()), 2),
        "chunks_reaching_99pct_within_100ms": CHUNKS - len(late),
        "late_chunks_during_a_full_gc": len(late_in_gc),
        "full_gc_pauses_while_streaming_ms": [round(ms, 1) for _, ms in collections.pauses],
        "streams_watched": streams,
        "stream_reader_connections": readers,
        "redis_connections_before_viewers": before_viewers,
        "redis_connections_while_streaming": max(connections),
        "redis_max_connections_setting": settings.redis_max_connections,
        "viewers_that_got_end_event": ended,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    assert missing == 0
    assert ended == VIEWERS
    assert readers == 1
    assert streams == 2  # the job's log, and its queue's events (the end of a job without logs)
    # the shared pool (capped by redis_max_connections), the ready listener, one XREAD reader
    assert max(connections) <= settings.redis_max_connections + 2
