"""Redis-side figures for benchmarks (``leasehold bench``): CPU time, memory and version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leasehold.scheduler.connection import connect


@dataclass(frozen=True)
class RedisUsage:
    """One ``INFO`` reading; deltas of two readings give a phase's cost."""

    cpu_secs: float  # used_cpu_sys + used_cpu_user of the redis-server process
    used_memory: int  # bytes
    version: str

    def cpu_us_per(self, before: RedisUsage, jobs: int) -> float | None:
        return (self.cpu_secs - before.cpu_secs) * 1e6 / jobs if jobs else None

    def bytes_per(self, before: RedisUsage, jobs: int) -> float | None:
        return (self.used_memory - before.used_memory) / jobs if jobs else None


class RedisProbe:
    """A small client for ``INFO`` only; never touches the scheduler's keys."""

    def __init__(self, url: str) -> None:
        self.redis = connect(url, max_connections=2)

    async def usage(self) -> RedisUsage:
        info: dict[str, Any] = await self.redis.info()
        return RedisUsage(
            cpu_secs=float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0)),
            used_memory=int(info.get("used_memory", 0)),
            version=str(info.get("redis_version", "?")),
        )

    async def close(self) -> None:
        await self.redis.aclose()
