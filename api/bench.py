"""``leasehold bench``: throughput and latency of the HTTP protocol, measured end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class BenchConfig:
    server: str | None = None
    token: str | None = None
    jobs: int = 10_000
    workers: int = 64
    batch: int = 50
    queue: str = "bench"
    json_out: Path | None = None


@dataclass
class Result:
    name: str
    jobs: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"benchmark": self.name, "jobs": self.jobs,
                               "jobs_per_sec": round(self.rate, 1)}
        if self.latencies_ms:
            ms = sorted(self.latencies_ms)
            row["p50_ms"] = round(statistics.median(ms), 2)
            row["p99_ms"] = round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2)
        return row


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.tty = sys.stderr.isatty()

    def add(self, n: int = 1) -> None:
        self.done += n
        if self.tty and (self.done % max(1, self.total // 100) == 0 or self.done == self.total):
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r{self.label:<28} [{'#' * filled}{'.' * (30 - filled)}] "
                             f"{self.done}/{self.total}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class Bench:
    def __init__(self, config: BenchConfig, http: aiohttp.ClientSession, base: str) -> None:
        self.config = config
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.base + path, json=body, headers=self.headers) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"{path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def fill(self, n: int) -> None:
        progress = Progress("fill (bulk)", n)
        for start in range(0, n, 1000):
            count = min(1000, n - start)
            await self.post("/api/jobs/bulk", {"jobs": [{"queue": self.config.queue}] * count})
            progress.add(count)

    async def submit_single(self, n: int) -> Result:
        progress = Progress("submit (one per request)", n)
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            await self.post("/api/jobs", {"queue": self.config.queue})
            latencies.append((time.perf_counter() - started) * 1000)
            progress.add()

        seconds = await self._spread(n, one)
        return Result("submit, one job per request", n, seconds, latencies)

    async def submit_bulk(self, n: int) -> Result:
        started = time.perf_counter()
        await self.fill(n)
        return Result("submit, bulk of 1000", n, time.perf_counter() - started)

    async def burn_single(self, n: int, heartbeat: bool) -> Result:
        await self.fill(n)
        label = "claim→heartbeat→complete" if heartbeat else "claim→complete"
        progress = Progress(label, n)
        latencies: list[float] = []
        done = 0

        async def worker(w: int) -> None:
            nonlocal done
            while done < n:
                started = time.perf_counter()
                claim = await self.post("/api/jobs/claim", {
                    "worker_id": f"bench-{w}", "queues": [self.config.queue]})
                latencies.append((time.perf_counter() - started) * 1000)
                if claim is None:
                    return
                lease = claim["lease"]["lease_id"]
                if heartbeat:
                    await self.post(f"/api/jobs/{lease}/heartbeat", {})
                await self.post(f"/api/jobs/{lease}/complete", {})
                done += 1
                progress.add()

        seconds = await self._workers(worker)
        return Result(f"{label}, one job per request", done, seconds, latencies)

    async def burn_batch(self, n: int) -> Result:
        await self.fill(n)
        progress = Progress("batch claim→complete", n)
        done = 0

        async def worker(w: int) -> None:
            nonlocal done
            while done < n:
                reply = await self.post("/api/jobs/claim", {
                    "worker_id": f"bench-{w}", "queues": [self.config.queue],
                    "max_jobs": self.config.batch})
                claims = reply["claims"]
                if not claims:
                    return
                await self.post("/api/leases/complete", {"completions": [
                    {"lease_id": c["lease"]["lease_id"]} for c in claims]})
                done += len(claims)
                progress.add(len(claims))

        seconds = await self._workers(worker, max(1, self.config.workers // 8))
        return Result(f"batch claim ({self.config.batch}) → batch complete", done, seconds)

    async def submit_to_claim(self, samples: int = 200) -> Result:
        """Latency from submit to a long-polling claimer's reply, one job at a time."""
        latencies: list[float] = []

        async def waiter() -> None:
            while len(latencies) < samples:
                claim = await self.post("/api/jobs/claim", {
                    "worker_id": "bench-waiter", "queues": [self.config.queue + "-lp"],
                    "wait_secs": 5})
                if claim is None:
                    continue
                latencies.append((time.perf_counter() - claim["job"]["payload"]) * 1000)
                await self.post(f"/api/jobs/{claim['lease']['lease_id']}/complete", {})

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.2)
        progress = Progress("submit→claim (long-poll)", samples)
        started = time.perf_counter()
        for _ in range(samples):
            count = len(latencies)
            await self.post("/api/jobs", {"queue": self.config.queue + "-lp",
                                          "payload": time.perf_counter()})
            while len(latencies) == count:  # noqa: ASYNC110 - a 1 ms poll costs nothing here
                await asyncio.sleep(0.001)
            progress.add()
        await task
        return Result("submit → long-poll claim", samples, time.perf_counter() - started,
                      latencies)

    async def _spread(self, n: int, one: Callable[[], Awaitable[None]]) -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker(_: int) -> None:
            while not queue.empty():
                queue.get_nowait()
                await one()

        return await self._workers(worker)

    async def _workers(self, worker: Callable[[int], Awaitable[None]],
                       count: int | None = None) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(count or self.config.workers)))
        return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_server() -> Iterator[str]:
    """A ``leasehold serve --no-auth`` child on a free port with its own embedded Redis."""
    port = _free_port()
    data = tempfile.mkdtemp(prefix="leasehold-bench-")
    env = {**os.environ, "LEASEHOLD_LOG_LEVEL": "warning"}
    env.pop("LEASEHOLD_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--no-auth", "--port",
                             str(port), "--data-dir", data], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


async def run(config: BenchConfig, base: str) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        bench = Bench(config, http, base)
        n = config.jobs
        return [
            await bench.submit_single(max(100, n // 5)),
            await bench.burn_single(max(100, n // 5), heartbeat=False),
            await bench.submit_bulk(n),
            await bench.burn_single(n, heartbeat=False),
            await bench.burn_single(max(100, n // 5), heartbeat=True),
            await bench.burn_batch(n),
            await bench.submit_to_claim(),
        ]


def print_table(results: list[Result]) -> None:
    rows = [r.row() for r in results]
    print(f"{'benchmark':<46} {'jobs':>7} {'jobs/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['benchmark']:<46} {row['jobs']:>7} {row['jobs_per_sec']:>9} "
              f"{row.get('p50_ms', ''):>8} {row.get('p99_ms', ''):>8}")


def main(config: BenchConfig) -> int:
    async def go(base: str) -> list[Result]:
        return await run(config, base)

    if config.server:
        results = asyncio.run(go(config.server.rstrip("/")))
    else:
        with local_server() as base:
            results = asyncio.run(go(base))
    print_table(results)
    if config.json_out:
        config.json_out.write_text(json.dumps([r.row() for r in results], indent=2))
    return 0
