"""``leasehold bench``: throughput and latency of the HTTP protocol, measured end to end.

Every phase uses a queue of its own (named after the run), so no phase sees another's jobs.
Without ``--server`` the bench owns everything: an embedded redis-server (as ``make run`` starts
it: unix socket, AOF every second) and ``--api-processes`` ``leasehold serve`` children, with auth
on (as users run it; ``--no-auth`` to compare) and simulated workers holding worker tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from leasehold.api.cli.bench_report import Progress, Result, goals, machine, print_table
from leasehold.scheduler.benchinfo import RedisProbe, RedisUsage
from leasehold.scheduler.embedded import FAKE_URL, EmbeddedRedis

FILL_CHUNK = 1000  # the bulk endpoint's limit
FILLERS = 4  # bulk requests in flight while pre-filling


@dataclass
class BenchConfig:
    server: str | None = None  # one URL, or several comma-separated (API processes of one Redis)
    token: str | None = None
    redis_url: str | None = None  # with --server: where to read Redis CPU and memory
    jobs: int = 10_000
    workers: int = 64
    batch: int = 50
    batch_workers: int = 8
    api_processes: int = 1
    concurrency: list[int] = field(default_factory=list)  # a throughput sweep when given
    latency_samples: int = 200
    queue: str = "bench"
    json_out: Path | None = None
    auth: bool = True  # without --server: the API processes check tokens


class Bench:
    def __init__(self, config: BenchConfig, http: aiohttp.ClientSession, bases: list[str],
                 probe: RedisProbe | None = None, api_pids: list[int] | None = None) -> None:
        self.config = config
        self.http = http
        self.bases = bases
        self.probe = probe
        self.api_pids = api_pids or []
        self.requests = 0  # HTTP requests sent so far (API CPU per request)
        self._registered: set[str] = set()
        self._worker_headers: dict[str, dict[str, str]] = {}  # worker id -> its token's headers
        self.prefix = f"{config.queue}-{secrets.token_hex(3)}"
        self.headers = {"Content-Type": "application/json"}
        if config.token:
            self.headers["Authorization"] = f"Bearer {config.token}"

    def queue(self, phase: str) -> str:
        return f"{self.prefix}-{phase}"

    async def post(self, path: str, body: bytes, worker: int = 0, as_worker: str = "") -> Any:
        """``as_worker``: with that worker's own token (when it has one), as a fleet calls."""
        url = self.bases[worker % len(self.bases)] + path
        headers = self._worker_headers.get(as_worker, self.headers)
        self.requests += 1
        async with self.http.post(url, data=body, headers=headers) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"{path}: {resp.status} {raw.decode(errors='replace')}")
            return orjson.loads(raw)

    async def worker(self, worker_id: str, worker: int = 0) -> str:
        """``worker_id``, registered once (a claim names a registered worker)."""
        if worker_id not in self._registered:
            url = self.bases[worker % len(self.bases)] + "/api/workers/register"
            body = orjson.dumps({"worker_id": worker_id, "labels": []})
            async with self.http.post(url, data=body, headers=self.headers) as resp:
                if resp.status not in (201, 409):  # 409: still registered from an earlier run
                    raise RuntimeError(f"register: {resp.status} {await resp.text()}")
                if resp.status == 201 and self.config.token:
                    token = (await resp.json())["worker_token"]
                    self._worker_headers[worker_id] = {
                        "Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            self._registered.add(worker_id)
        return worker_id

    async def usage(self) -> RedisUsage | None:
        return await self.probe.usage() if self.probe else None

    async def measured(self, phase: Awaitable[Result]) -> Result:
        """Runs ``phase`` and adds Redis CPU per job when the bench can read Redis, and the API
        processes' CPU per job and per request when it started them."""
        before, cpu_before, sent_before = await self.usage(), api_cpu_secs(self.api_pids), \
            self.requests
        result = await phase
        after, cpu_after = await self.usage(), api_cpu_secs(self.api_pids)
        if before and after:
            result.redis_cpu_us_per_job = after.cpu_us_per(before, result.jobs)
        if self.api_pids and result.jobs:
            spent_us = (cpu_after - cpu_before) * 1e6
            result.api_cpu_us_per_job = spent_us / result.jobs
            result.api_cpu_us_per_request = spent_us / max(1, self.requests - sent_before)
        return result

    # -- producers -----------------------------------------------------------------------------

    async def fill(self, queue: str, n: int, label: str = "") -> float:
        """Submits ``n`` no-op jobs to ``queue`` in bulk; returns the seconds it took."""
        progress = Progress(label or f"fill {queue}", n)
        chunks = [min(FILL_CHUNK, n - start) for start in range(0, n, FILL_CHUNK)]
        spec = {"queue": queue, "command": "true", "result_ttl_secs": 3600}

        async def filler(w: int) -> None:
            for count in chunks[w::FILLERS]:
                await self.post("/api/jobs/bulk", orjson.dumps({"jobs": [spec] * count}), w)
                progress.add(count)

        started = time.perf_counter()
        await asyncio.gather(*(filler(w) for w in range(FILLERS)))
        return time.perf_counter() - started

    async def submit_single(self, n: int) -> Result:
        progress = Progress("submit (one per request)", n)
        latencies: list[float] = []
        body = orjson.dumps({"queue": self.queue("submit"), "command": "true",
                             "result_ttl_secs": 3600})
        left = [n]

        async def worker(w: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                started = time.perf_counter()
                await self.post("/api/jobs", body, w)
                latencies.append((time.perf_counter() - started) * 1000)
                progress.add()

        seconds = await self._workers(worker, self.config.workers)
        return Result("submit, one job per request", "submit-single", n, seconds,
                      self.config.workers, latencies, "submit")

    async def submit_bulk(self, queue: str, n: int) -> Result:
        before = await self.usage()
        seconds = await self.fill(queue, n, "submit (bulk of 1000)")
        after = await self.usage()
        result = Result("submit, bulk of 1000", "submit-bulk", n, seconds, FILLERS)
        if before and after:
            result.redis_cpu_us_per_job = after.cpu_us_per(before, n)
            result.redis_bytes_per_job = after.bytes_per(before, n)
        return result

    # -- workers -------------------------------------------------------------------------------

    async def burn_single(self, queue: str, n: int, workers: int, heartbeat: bool = False
                          ) -> Result:
        """``workers`` simulated workers claim → [heartbeat →] complete until ``queue`` is empty."""
        label = "claim→heartbeat→complete" if heartbeat else "claim→complete"
        progress = Progress(f"{label} x{workers}", n)
        latencies: list[float] = []
        done = [0]

        async def worker(w: int) -> None:
            me = await self.worker(f"bench-{w}", w)
            claim_body = orjson.dumps({"worker_id": me, "queues": [queue]})
            while True:
                started = time.perf_counter()
                claim = await self.post("/api/jobs/claim", claim_body, w, me)
                latencies.append((time.perf_counter() - started) * 1000)
                if claim is None:
                    return
                lease = claim["lease"]["lease_id"]
                if heartbeat:
                    await self.post(f"/api/jobs/{lease}/heartbeat", b"{}", w, me)
                await self.post(f"/api/jobs/{lease}/complete", b"{}", w, me)
                done[0] += 1
                progress.add()

        seconds = await self._workers(worker, workers)
        mode = "heartbeat" if heartbeat else "single"
        return Result(f"{label}, one job per request", mode, done[0], seconds, workers,
                      latencies, "claim")

    async def burn_next(self, queue: str, n: int, workers: int) -> Result:
        """One request per job: each complete carries ``next`` and returns the next lease."""
        progress = Progress(f"complete+next x{workers}", n)
        latencies: list[float] = []
        done = [0]

        async def worker(w: int) -> None:
            me = await self.worker(f"bench-{w}", w)
            claim = await self.post("/api/jobs/claim",
                                    orjson.dumps({"worker_id": me, "queues": [queue]}), w, me)
            body = orjson.dumps({"next": {"worker_id": me}})
            while claim is not None:
                started = time.perf_counter()
                reply = await self.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                                        body, w, me)
                latencies.append((time.perf_counter() - started) * 1000)
                done[0] += 1
                progress.add()
                claim = reply["next"]

        seconds = await self._workers(worker, workers)
        return Result("complete with next claim, one request per job", "next", done[0],
                      seconds, workers, latencies, "complete+claim")

    async def burn_batch(self, queue: str, n: int, workers: int) -> Result:
        """Claims up to ``batch`` jobs per request and completes them in one request."""
        progress = Progress(f"batch claim→complete x{workers}", n)
        latencies: list[float] = []
        done = [0]

        async def worker(w: int) -> None:
            me = await self.worker(f"bench-{w}", w)
            claim_body = orjson.dumps({"worker_id": me, "queues": [queue],
                                       "max_jobs": self.config.batch})
            while True:
                started = time.perf_counter()
                claims = (await self.post("/api/jobs/claim", claim_body, w, me))["claims"]
                latencies.append((time.perf_counter() - started) * 1000)
                if not claims:
                    return
                await self.post("/api/leases/complete", orjson.dumps({"completions": [
                    {"lease_id": c["lease"]["lease_id"]} for c in claims]}), w, me)
                done[0] += len(claims)
                progress.add(len(claims))

        seconds = await self._workers(worker, workers)
        return Result(f"batch claim ({self.config.batch}) → batch complete", "batch", done[0],
                      seconds, workers, latencies, "claim")

    async def submit_to_claim(self, samples: int) -> Result:
        """Latency from submit to a long-polling claimer's reply, one job at a time."""
        queue = self.queue("longpoll")
        latencies: list[float] = []
        claimed = asyncio.Event()

        async def waiter() -> None:
            body = orjson.dumps({"worker_id": await self.worker("bench-waiter"), "queues": [queue],
                                 "wait_secs": 5})
            while len(latencies) < samples:
                claim = await self.post("/api/jobs/claim", body)
                if claim is None:
                    continue
                latencies.append((time.perf_counter() - claim["job"]["payload"]) * 1000)
                claimed.set()
                await self.post(f"/api/jobs/{claim['lease']['lease_id']}/complete", b"{}")

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.2)  # the waiter is parked on its long-poll
        progress = Progress("submit→claim (long-poll)", samples)
        started = time.perf_counter()
        for _ in range(samples):
            claimed.clear()
            await self.post("/api/jobs", orjson.dumps({"queue": queue,
                                                       "payload": time.perf_counter()}))
            await asyncio.wait_for(claimed.wait(), 10)
            progress.add()
            await asyncio.sleep(0.002)  # let the waiter complete and park again
        await task
        return Result("submit → long-poll claim", "long-poll", samples,
                      time.perf_counter() - started, 1, latencies, "submit→claim")

    async def _workers(self, worker: Callable[[int], Awaitable[None]], count: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(count)))
        return time.perf_counter() - started

    # -- plans ---------------------------------------------------------------------------------

    async def standard(self) -> list[Result]:
        """The default run: every mode once, at ``workers`` concurrency."""
        n, c = self.config.jobs, self.config.workers
        small = max(100, n // 5)
        results = [await self.measured(self.submit_single(small)),
                   await self.submit_bulk(self.queue("single"), n),
                   await self.measured(self.burn_single(self.queue("single"), n, c))]
        await self.fill(self.queue("next"), n)
        results.append(await self.measured(self.burn_next(self.queue("next"), n, c)))
        await self.fill(self.queue("heartbeat"), small)
        results.append(await self.measured(self.burn_single(self.queue("heartbeat"), small, c,
                                                            heartbeat=True)))
        await self.fill(self.queue("batch"), n)
        results.append(await self.measured(self.burn_batch(self.queue("batch"), n,
                                                           self.config.batch_workers)))
        results.append(await self.submit_to_claim(self.config.latency_samples))
        return results

    async def sweep(self, levels: list[int], modes: tuple[str, ...] = ("single", "batch")
                    ) -> list[Result]:
        """Claim→complete burn-downs of ``jobs`` jobs at each concurrency, per mode."""
        results = []
        for mode in modes:
            for level in levels:
                queue = self.queue(f"{mode}-c{level}")
                await self.fill(queue, self.config.jobs)
                burn = (self.burn_batch(queue, self.config.jobs, level) if mode == "batch"
                        else self.burn_single(queue, self.config.jobs, level))
                results.append(await self.measured(burn))
                results[-1].sweep = True
        return results


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"leasehold serve at {base} did not start") from None
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# base URL -> pid of the API processes ``serve`` started (their CPU is part of the report)
SERVED_PIDS: dict[str, int] = {}


def api_cpu_secs(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextlib.contextmanager
def serve(redis_url: str | None, processes: int = 1, data_dir: str | None = None,
          admin_token: str | None = None) -> Iterator[list[str]]:
    """``processes`` ``leasehold serve`` children on free ports sharing ``redis_url`` (None: one
    child with an embedded Redis of its own in ``data_dir``); auth on with ``admin_token``,
    else ``--no-auth``."""
    env = {**os.environ, "LEASEHOLD_LOG_LEVEL": "warning"}
    env.pop("LEASEHOLD_REDIS_URL", None)
    if redis_url is not None:
        env["LEASEHOLD_REDIS_URL"] = redis_url
    if admin_token is not None:
        env["LEASEHOLD_ADMIN_TOKEN"] = admin_token
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(processes):
            port = _free_port()
            args = [sys.executable, "-m", "leasehold.api.cli", "serve", "--port", str(port)]
            if admin_token is None:
                args.append("--no-auth")
            if data_dir is not None:
                args += ["--data-dir", data_dir]
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            children.append((f"http://127.0.0.1:{port}", proc))
            SERVED_PIDS[children[-1][0]] = proc.pid
        for base, proc in children:
            _wait_healthy(base, proc)
        yield [base for base, _ in children]
    finally:
        for base, proc in children:
            SERVED_PIDS.pop(base, None)
            proc.terminate()
        for _, proc in children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def local_server(processes: int = 1, admin_token: str | None = None
                 ) -> Iterator[tuple[list[str], str | None]]:
    """An embedded redis-server (as ``make run`` starts it) and ``processes`` API children;
    yields their URLs and the Redis URL (None when only the in-process fake Redis exists)."""
    data = tempfile.mkdtemp(prefix="leasehold-bench-")
    embedded = EmbeddedRedis(Path(data) / "redis")
    try:
        url = embedded.start()
        if url == FAKE_URL:  # no redis-server binary: each child would get its own fake
            with serve(None, 1, data, admin_token) as bases:
                yield bases, None
        else:
            with serve(url, processes, admin_token=admin_token) as bases:
                yield bases, url
    finally:
        embedded.stop()
        shutil.rmtree(data, ignore_errors=True)


async def run(config: BenchConfig, bases: list[str], redis_url: str | None,
              plan: Callable[[Bench], Awaitable[list[Result]]] | None = None
              ) -> tuple[list[Result], dict[str, Any]]:
    """Runs ``plan`` (default: the standard run, then the sweep if asked) against ``bases``."""
    probe = RedisProbe(redis_url) if redis_url else None
    try:
        version = (await probe.usage()).version if probe else None
        about = machine(version)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            pids = [SERVED_PIDS[base] for base in bases if base in SERVED_PIDS]
            bench = Bench(config, http, bases, probe, pids)
            if plan is not None:
                return await plan(bench), about
            results = await bench.standard()
            if config.concurrency:
                results += await bench.sweep(config.concurrency)
            return results, about
    finally:
        if probe:
            await probe.close()


def run_sync(config: BenchConfig, bases: list[str], redis_url: str | None,
             plan: Callable[[Bench], Awaitable[list[Result]]] | None = None
             ) -> tuple[list[Result], dict[str, Any]]:
    """``run`` on uvloop when installed (the client's own CPU is part of what is measured)."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run(config, bases, redis_url, plan))


def report(config: BenchConfig, results: list[Result], about: dict[str, Any],
           processes: int) -> dict[str, Any]:
    return {"machine": about,
            "config": {"jobs": config.jobs, "workers": config.workers, "batch": config.batch,
                       "batch_workers": config.batch_workers, "api_processes": processes,
                       "auth": bool(config.token),
                       "server": config.server or "private (embedded redis-server, AOF)"},
            "results": [r.row() for r in results]}


def main(config: BenchConfig) -> int:
    if config.server:
        bases = [s.strip().rstrip("/") for s in config.server.split(",") if s.strip()]
        results, about = run_sync(config, bases, config.redis_url)
    else:
        if config.auth and not config.token:
            config.token = "lha_bench-" + secrets.token_urlsafe(24)
        admin = config.token if config.auth else None
        with local_server(config.api_processes, admin) as (bases, redis_url):
            results, about = run_sync(config, bases, redis_url)
    to_stdout = config.json_out == Path("-")
    out = sys.stderr if to_stdout else sys.stdout  # --json -: the JSON alone on stdout
    print(f"{about['cpu']} ({about['cores']} cores), Python {about['python']}, "
          f"Redis {about['redis'] or 'not reachable'}, load {about['load_avg_1m_at_start']}",
          file=out)
    print_table(results, out)
    for text, met in goals(results):
        print(f"  {'met ' if met else 'MISS'}  {text}", file=out)
    if config.json_out:
        text = json.dumps(report(config, results, about, len(bases)), indent=2) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            config.json_out.write_text(text)
    return 0
