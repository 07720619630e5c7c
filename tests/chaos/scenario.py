"""One chaos run: a Redis, a fleet on it, a producer queue, the ledger and the events tail; every
scenario ends in ``Scenario.verdict`` (the ledger checker)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.chaos.fleet import REAP_INTERVAL_SECS, ChaosRedis, Fleet, Lab
from tests.chaos.ledger import Ledger, Report
from tests.chaos.load import Producer, job_command
from tests.chaos.observe import EventTail, settle, verdict

SETTLE_SECS = 25.0


@dataclass
class Scenario:
    lab: Lab
    redis_server: ChaosRedis
    fleet: Fleet
    queue: str
    ledger: Ledger
    tail: EventTail
    redis: aioredis.Redis
    servers: list[str] = field(default_factory=list)

    @property
    def executions(self) -> Path:
        return self.ledger.executions_file

    def command(self, work_secs: float = 0.1) -> str:
        return job_command(self.executions, work_secs)

    def producer(self, servers: list[str] | None = None, work_secs: float = 0.1,
                 retries: int = 30, spec: dict[str, Any] | None = None) -> Producer:
        return Producer(self.ledger, servers or self.servers, self.fleet.admin_token, self.queue,
                        self.command(work_secs), retries=retries, spec=spec)

    async def verdict(self, within: float = SETTLE_SECS, complete_history: bool = True,
                      clean: bool = True) -> Report:
        await settle(self.redis, self.fleet.namespace, [self.queue], self.ledger, within)
        report = await verdict(self.redis, self.fleet.namespace, [self.queue], self.ledger,
                               self.tail, round(REAP_INTERVAL_SECS * 1000),
                               complete_history=complete_history)
        if clean:
            report.assert_clean()
        return report

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.tail.__aexit__()
        with contextlib.suppress(Exception):
            await self.redis.aclose()


async def start(lab: Lab, *redis_flags: str, servers: int = 1, reapers: int = 1,
                queue: str | None = None, **env: str) -> Scenario:
    """A Redis with ``redis_flags``, ``servers`` API processes and ``reapers`` reapers."""
    server = lab.redis(*redis_flags)
    fleet = lab.fleet(server.url, **env)
    urls = [await fleet.serve() for _ in range(servers)]
    for _ in range(reapers):
        fleet.reaper()
    queue = queue or f"q{uuid.uuid4().hex[:8]}"
    ledger = Ledger(lab.root / f"executions-{queue}.log")
    tail = EventTail(server.url, fleet.namespace, [queue])
    await tail.__aenter__()
    client = aioredis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5)
    scenario = Scenario(lab, server, fleet, queue, ledger, tail, client, urls)
    lab.on_close.append(scenario.aclose)
    return scenario
