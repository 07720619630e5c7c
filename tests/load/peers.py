"""Leasehold against SAQ, arq, RQ and BullMQ (Python) on one private redis-server, in one run.

    python -m tests.load.peers [--jobs 10000] [--levels 1,4,16,64,256] [--only saq,arq]

Each peer burns down ``--jobs`` pre-enqueued no-op jobs through its own worker and normal public
API, with its default concurrency, and then at each level of the sweep (64 is the "tuned"
setting the README quotes). Every peer runs in a child process of its own, one at a time, with
the database flushed in between. Leasehold then runs its HTTP modes (one job per request, and
batch claim/complete) against the same redis-server with ``leasehold serve`` children. Writes
``docs/bench/results.json`` and ``docs/bench/throughput.png``. Needs the ``bench`` extra
(``pip install -e '.[bench]'``); a peer that is not installed is recorded as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

from leasehold.api.cli.bench import Bench, BenchConfig, serve
from leasehold.api.cli.bench import run_sync as bench_run
from leasehold.api.cli.bench_report import Result, machine
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "bench"
PEERS = ("saq", "arq", "rq", "bullmq")
DEFAULT_CONCURRENCY = {"saq": 10, "arq": 10, "bullmq": 1, "rq": 1}  # each library's own default
TUNED = 64
RQ_PROCESSES = (1, 2, 4, 8)  # RQ runs one job at a time per worker process
RQ_FORK_JOBS = 1000  # RQ's default Worker forks a process per job: a smaller burn-down
ENQUEUE_CONCURRENCY = 64  # single enqueues in flight, as many as our bench's submitters
CHILD_TIMEOUT_SECS = 600
QUEUE = "peers"


# -- the no-op jobs ----------------------------------------------------------------------------

async def noop(ctx: Any) -> None:
    """SAQ's and arq's job function."""


def rq_noop() -> None:
    """RQ's job function (imported by path in the worker)."""


async def bullmq_noop(job: Any, token: str) -> None:
    """BullMQ's processor."""


async def _enqueue(count: int, one: Callable[[], Awaitable[Any]]) -> float:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def gated() -> None:
        async with gate:
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(count)))
    return time.perf_counter() - started


async def _until(done: Callable[[], Awaitable[bool]], limit: float = CHILD_TIMEOUT_SECS) -> None:
    deadline = time.monotonic() + limit
    while not await done():
        if time.monotonic() > deadline:
            raise TimeoutError("the burn-down did not finish")
        await asyncio.sleep(0.005)


# -- one child process per measurement ---------------------------------------------------------

async def run_saq(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    from saq import Queue, Worker

    queue = Queue.from_url(url, name=QUEUE)
    await queue.connect()
    enqueue = await _enqueue(jobs, lambda: queue.enqueue("noop"))
    worker = Worker(queue, functions=[noop], concurrency=concurrency)
    started = time.perf_counter()
    task = asyncio.create_task(worker.start())

    async def finished() -> bool:
        return bool(await queue.count("incomplete") == 0)

    await _until(finished)
    seconds = time.perf_counter() - started
    await worker.stop()
    task.cancel()
    await queue.disconnect()
    return {"enqueue_secs": enqueue, "burn_secs": seconds,
            "how": "Worker(concurrency=N).start(); done when count('incomplete') == 0"}


async def run_arq(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker

    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    enqueue = await _enqueue(jobs, lambda: pool.enqueue_job("noop"))
    worker = Worker(functions=[noop], redis_settings=settings, max_jobs=concurrency,
                    burst=True, handle_signals=False)
    started = time.perf_counter()
    await worker.main()  # burst: returns once the queue is empty and its jobs have finished
    seconds = time.perf_counter() - started
    await worker.close()
    await pool.aclose()
    return {"enqueue_secs": enqueue, "burn_secs": seconds,
            "how": "Worker(max_jobs=N, burst=True).main() (poll_delay 0.5 s default)"}


async def run_bullmq(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    from bullmq import Queue, Worker

    queue = Queue(QUEUE, {"connection": url})
    enqueue = await _enqueue(jobs, lambda: queue.add("noop", {}))
    completed = [0]
    worker = Worker(QUEUE, bullmq_noop, {"connection": url, "concurrency": concurrency,
                                         "autorun": False})
    worker.on("completed", lambda *_: completed.__setitem__(0, completed[0] + 1))

    async def finished() -> bool:
        return completed[0] >= jobs

    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    await _until(finished)
    seconds = time.perf_counter() - started
    # All jobs are done; a plain close() sometimes never returns here (it waits on its blocking
    # fetch), so force it, and give up waiting after a while: the child exits regardless.
    await asyncio.wait({asyncio.ensure_future(worker.close(force=True)), task}, timeout=10)
    return {"enqueue_secs": enqueue, "burn_secs": seconds,
            "how": "Worker(concurrency=N); done when N 'completed' events have fired"}


def run_rq(url: str, jobs: int, processes: int, fork: bool) -> dict[str, Any]:
    """``fork``: RQ's default ``Worker`` (a work horse forked per job), in this process;
    else ``processes`` ``SimpleWorker`` processes (no fork), started together."""
    from rq import Queue

    conn = redis.Redis.from_url(url)
    queue = Queue(QUEUE, connection=conn)
    started = time.perf_counter()
    for _ in range(jobs):
        queue.enqueue("tests.load.peers.rq_noop")  # by path: the worker imports it
    enqueue = time.perf_counter() - started
    if fork:
        from rq import Worker

        started = time.perf_counter()
        Worker([queue], connection=conn).work(burst=True)
        seconds = time.perf_counter() - started
        how = "Worker (forks a work horse per job), work(burst=True), one process"
    else:
        children = [subprocess.Popen([sys.executable, "-m", "tests.load.peers", "rq-worker",
                                      "--url", url], cwd=ROOT) for _ in range(processes)]
        for _ in range(processes):  # each child is imported and connected
            conn.blpop(["peers:rq-ready"], timeout=60)
        started = time.perf_counter()
        conn.rpush("peers:rq-go", *["go"] * processes)
        for child in children:
            child.wait(timeout=CHILD_TIMEOUT_SECS)
        seconds = time.perf_counter() - started
        how = "N SimpleWorker processes (no fork per job), work(burst=True)"
    conn.close()
    return {"enqueue_secs": enqueue, "burn_secs": seconds, "how": how}


def rq_worker(url: str) -> None:
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(url)
    worker = SimpleWorker([Queue(QUEUE, connection=conn)], connection=conn)
    conn.rpush("peers:rq-ready", "1")
    conn.blpop(["peers:rq-go"], timeout=60)
    worker.work(burst=True, logging_level="WARNING")


def child(peer: str, url: str, jobs: int, concurrency: int, fork: bool) -> dict[str, Any]:
    if peer == "saq":
        found = asyncio.run(run_saq(url, jobs, concurrency))
    elif peer == "arq":
        found = asyncio.run(run_arq(url, jobs, concurrency))
    elif peer == "bullmq":
        found = asyncio.run(run_bullmq(url, jobs, concurrency))
    else:
        found = run_rq(url, jobs, concurrency, fork)
    return {"jobs": jobs, "concurrency": concurrency, **found,
            "enqueue_jobs_per_sec": round(jobs / found["enqueue_secs"], 1),
            "jobs_per_sec": round(jobs / found["burn_secs"], 1)}


# -- the parent: runs every child against one redis-server -------------------------------------

class Runner:
    def __init__(self, url: str, jobs: int) -> None:
        self.url = url
        self.jobs = jobs
        self.admin = redis.Redis.from_url(url)

    def measure(self, peer: str, concurrency: int, fork: bool = False,
                jobs: int | None = None) -> dict[str, Any]:
        self.admin.flushdb()
        args = [sys.executable, "-m", "tests.load.peers", "child", peer, "--url", self.url,
                "--jobs", str(jobs or self.jobs), "--concurrency", str(concurrency)]
        if fork:
            args.append("--fork")
        label = f"{peer} c={concurrency}{' (fork)' if fork else ''}"
        print(f"  {label:<24}", end="", flush=True)
        load = os.getloadavg()[0]
        try:
            done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True,
                                  timeout=CHILD_TIMEOUT_SECS)
            row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            stderr = getattr(exc, "stderr", "") or ""
            row = {"concurrency": concurrency, "error": f"{exc} {stderr[-500:]}".strip()}
            print(" failed:", row["error"][:200])
            return row
        row["load_avg_1m_before"] = round(load, 2)
        row["at"] = time.strftime("%H:%M:%S")
        print(f" {row['jobs_per_sec']:>9,.0f} jobs/s  "
              f"(enqueue {row['enqueue_jobs_per_sec']:,.0f}/s)")
        return row

    def peer(self, name: str, levels: list[int]) -> dict[str, Any]:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            print(f"  {name}: not installed (pip install -e '.[bench]'), skipped")
            return {"skipped": "not installed"}
        entry: dict[str, Any] = {"version": version}
        if name == "rq":
            entry["default"] = self.measure("rq", 1, fork=True, jobs=min(self.jobs, RQ_FORK_JOBS))
            entry["sweep"] = [self.measure("rq", n) for n in RQ_PROCESSES]
            entry["concurrency_means"] = "worker processes (SimpleWorker)"
            ok = [r for r in entry["sweep"] if "jobs_per_sec" in r]
            entry["tuned"] = max(ok, key=lambda r: r["jobs_per_sec"]) if ok else entry["sweep"][-1]
        else:
            entry["default"] = self.measure(name, DEFAULT_CONCURRENCY[name])
            entry["sweep"] = [self.measure(name, n) for n in levels]
            entry["concurrency_means"] = "jobs in flight in one asyncio worker process"
            entry["tuned"] = next((r for r in entry["sweep"] if r["concurrency"] == TUNED),
                                  entry["sweep"][-1])
        entry["best_of_default_and_tuned"] = max(
            (r.get("jobs_per_sec", 0.0) for r in (entry["default"], entry["tuned"])), default=0.0)
        return entry

    def leasehold(self, levels: list[int]) -> dict[str, Any]:
        self.admin.flushdb()
        config = BenchConfig(jobs=self.jobs)

        async def plan(bench: Bench) -> list[Result]:
            return await bench.standard() + await bench.sweep(levels)

        print("  leasehold (HTTP, leasehold serve --no-auth, one API process)")
        with serve(self.url, 1) as bases:
            results, _ = bench_run(config, bases, self.url, plan)
        rows = [r.row() for r in results]
        standard = rows[:-2 * len(levels)]
        sweep = rows[-2 * len(levels):]
        for row in rows:
            print(f"    {row['benchmark']:<46} c={row['concurrency']:<4} "
                  f"{row['jobs_per_sec']:>9,.0f} jobs/s")
        return {"version": importlib.metadata.version("leasehold"), "standard": standard,
                "sweep": sweep, "concurrency_means": "simulated HTTP workers (asyncio tasks, "
                "keep-alive) in one client process"}


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    ours = {row["mode"]: row for row in report["leasehold"]["standard"]}
    single, batch = ours["single"]["jobs_per_sec"], ours["batch"]["jobs_per_sec"]
    found: dict[str, Any] = {}
    for name in PEERS:
        best = report["peers"].get(name, {}).get("best_of_default_and_tuned")
        if best:
            found[name] = {"peer_jobs_per_sec": best,
                           "single_over_peer": round(single / best, 2),
                           "batch_over_peer": round(batch / best, 2)}
    return found


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    sweep = report["leasehold"]["sweep"]
    for mode, label, style in (("single", "Leasehold HTTP, one job per request", "o-"),
                               ("batch", "Leasehold HTTP, batch of 50", "s-")):
        points = [(r["concurrency"], r["jobs_per_sec"]) for r in sweep if r["mode"] == mode]
        ax.plot(*zip(*points, strict=True), style, label=label, linewidth=2)
    for name, entry in report["peers"].items():
        points = [(r["concurrency"], r["jobs_per_sec"]) for r in entry.get("sweep", [])
                  if "jobs_per_sec" in r]
        if not points:
            continue
        unit = " (processes)" if name == "rq" else ""
        ax.plot(*zip(*points, strict=True), "^--" if name == "rq" else "x--",
                label=f"{name} {entry['version']}{unit}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (workers / jobs in flight; RQ: worker processes)")
    ax.set_ylabel("no-op jobs per second (burn-down)")
    about = report["machine"]
    ax.set_title(f"Burn-down of {report['jobs']:,} no-op jobs, one redis-server "
                 f"{about['redis']}\n{about['cores']} cores ({about['cpu']}), "
                 f"Python {about['python']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("child", help="(internal) one measurement, JSON on stdout")
    one.add_argument("peer", choices=PEERS)
    one.add_argument("--url", required=True)
    one.add_argument("--jobs", type=int, required=True)
    one.add_argument("--concurrency", type=int, required=True)
    one.add_argument("--fork", action="store_true")
    worker = sub.add_parser("rq-worker", help="(internal) one RQ SimpleWorker process")
    worker.add_argument("--url", required=True)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per burn-down")
    parser.add_argument("--levels", default="1,4,16,64,256", help="concurrency sweep")
    parser.add_argument("--only", default=",".join(PEERS), help="peers to run")
    parser.add_argument("--out", default=str(OUT), help="where results.json and the PNG go")
    args = parser.parse_args(argv)
    if args.command == "child":
        print(json.dumps(child(args.peer, args.url, args.jobs, args.concurrency, args.fork)),
              flush=True)
        os._exit(0)  # no waiting on a library's leftover tasks or threads: the run is over
    if args.command == "rq-worker":
        rq_worker(args.url)
        return 0

    levels = [int(x) for x in args.levels.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="leasehold-peers-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        try:
            runner = Runner(server.url, args.jobs)
            version = str(runner.admin.info("server")["redis_version"])
            report: dict[str, Any] = {
                "machine": machine(version), "jobs": args.jobs,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "redis_server": "private redis-server on loopback TCP, no persistence",
                "peers": {}}
            print(f"{report['machine']}")
            for name in args.only.split(","):
                print(name)
                report["peers"][name] = runner.peer(name, levels)
            report["leasehold"] = runner.leasehold(levels)
            report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            report["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        finally:
            server.stop()
    report["ratios"] = ratios(report)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "throughput.png")
    print(json.dumps(report["ratios"], indent=2))
    print(f"wrote {out / 'results.json'} and {out / 'throughput.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
