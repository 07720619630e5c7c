"""What ``leasehold bench`` reports: one result per phase, the machine, a table and JSON."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of unsorted ``values`` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


@dataclass
class Result:
    """One phase: ``jobs`` done in ``seconds`` by ``concurrency`` simulated workers."""

    name: str
    mode: str  # submit-single, submit-bulk, single, heartbeat, batch, long-poll
    jobs: int
    seconds: float
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    latency_of: str = ""  # what the latencies time: "claim", "submit", "submit→claim"
    redis_cpu_us_per_job: float | None = None
    redis_bytes_per_job: float | None = None
    api_cpu_us_per_job: float | None = None  # CPU of the API processes the bench started
    api_cpu_us_per_request: float | None = None
    sweep: bool = False  # a point of the concurrency sweep, not of the standard run

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"benchmark": self.name, "mode": self.mode, "jobs": self.jobs,
                               "concurrency": self.concurrency,
                               "seconds": round(self.seconds, 3),
                               "jobs_per_sec": round(self.rate, 1)}
        if self.latencies_ms:
            row["latency_of"] = self.latency_of
            row["p50_ms"] = round(percentile(self.latencies_ms, 50), 2)
            row["p99_ms"] = round(percentile(self.latencies_ms, 99), 2)
        if self.redis_cpu_us_per_job is not None:
            row["redis_cpu_us_per_job"] = round(self.redis_cpu_us_per_job, 1)
        if self.api_cpu_us_per_job is not None:
            row["api_cpu_us_per_job"] = round(self.api_cpu_us_per_job, 1)
        if self.api_cpu_us_per_request is not None:
            row["api_cpu_us_per_request"] = round(self.api_cpu_us_per_request, 1)
        if self.redis_bytes_per_job is not None:
            row["redis_bytes_per_queued_job"] = round(self.redis_bytes_per_job)
        if self.sweep:
            row["sweep"] = True
        return row


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 100)

    def add(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if not self.tty or (before // self.step == self.done // self.step
                            and self.done < self.total):
            return
        filled = int(30 * min(self.done, self.total) / self.total)
        sys.stderr.write(f"\r{self.label:<34} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{self.done}/{self.total}")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(redis_version: str | None) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "redis": redis_version,
            "load_avg_1m_at_start": round(load[0], 2)}


def print_table(results: list[Result], out: Any = None) -> None:
    out = out or sys.stdout
    head = (f"{'benchmark':<48} {'conc':>5} {'jobs':>7} {'jobs/s':>9} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'redis µs/job':>12} {'api µs/job':>10} {'api µs/req':>10}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for n, result in enumerate(results):
        if result.sweep and (n == 0 or not results[n - 1].sweep):
            print("concurrency sweep:", file=out)
        row = result.row()
        cpu = row.get("redis_cpu_us_per_job", "")
        print(f"{row['benchmark']:<48} {row['concurrency']:>5} {row['jobs']:>7} "
              f"{row['jobs_per_sec']:>9} {row.get('p50_ms', ''):>8} {row.get('p99_ms', ''):>8} "
              f"{cpu:>12} {row.get('api_cpu_us_per_job', ''):>10} "
              f"{row.get('api_cpu_us_per_request', ''):>10}", file=out)


def goals(results: list[Result]) -> list[tuple[str, bool]]:
    """The issue's goals that one run can check on its own (peer ratios need peers.py)."""
    found: list[tuple[str, bool]] = []
    for r in (r for r in results if not r.sweep):
        if r.mode in ("single", "next") and r.concurrency == 64 and r.latencies_ms:
            p99 = percentile(r.latencies_ms, 99)
            found.append((f"{r.latency_of} p99 < 20 ms at 64 workers ({r.mode}): {p99:.1f} ms",
                          p99 < 20))
        if r.mode in ("single", "next") and r.api_cpu_us_per_request is not None:
            cpu = r.api_cpu_us_per_request
            found.append((f"API CPU ≤ 200 µs per hot-path request ({r.mode}): {cpu:.0f} µs",
                          cpu <= 200))
        if r.mode == "long-poll" and r.latencies_ms:
            p50 = percentile(r.latencies_ms, 50)
            found.append((f"submit→claim p50 < 5 ms with long-poll: {p50:.2f} ms", p50 < 5))
        elif r.mode == "batch":
            found.append((f"batch ≥ 10,000 jobs/s ({r.concurrency} workers): {r.rate:,.0f} jobs/s",
                          r.rate >= 10_000))
    return found
