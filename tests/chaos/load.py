"""The test clients: a producer that records every submit in the ledger (retrying an unknown
outcome with the same idempotency key), and the job commands that record every execution."""

from __future__ import annotations

import asyncio
import itertools
import shlex
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.chaos.ledger import Ledger, Submit

RETRY_POLICY: dict[str, Any] = {"max_retries": 5, "backoff": "None"}


def job_command(executions: Path, work_secs: float = 0.1) -> str:
    """A command that appends ``start``/``finish <job> <attempt>`` lines around its work."""
    target = shlex.quote(str(executions))
    return (f'echo "start $LEASEHOLD_JOB_ID $LEASEHOLD_ATTEMPT" >> {target}; '
            f'sleep {work_secs}; echo "finish $LEASEHOLD_JOB_ID $LEASEHOLD_ATTEMPT" >> {target}')


class Producer:
    """Submits jobs to the given servers in turn; an unknown outcome (no reply, 5xx) is retried
    with the same ``unique_key``, so a retry finds the job the lost reply created."""

    def __init__(self, ledger: Ledger, servers: Sequence[str], token: str, queue: str,
                 command: str, *, retries: int = 30, timeout: float = 5.0,
                 spec: dict[str, Any] | None = None) -> None:
        self.ledger = ledger
        self.servers = list(servers)
        self.token = token
        self.queue = queue
        self.command = command
        self.retries = retries
        self.spec = {"retry_policy": RETRY_POLICY, **(spec or {})}
        self.statuses: Counter[int] = Counter()
        self.missing_retry_after = 0
        self._turn = itertools.count()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def body(self, key: str, **extra: Any) -> dict[str, Any]:
        return {"queue": self.queue, "command": self.command, "unique_key": key,
                "unique_ttl_secs": 3600, "metadata": {"ledger": key}, **self.spec, **extra}

    async def attempt(self, key: str, server: str, **extra: Any) -> Submit:
        """One request; its outcome goes to the ledger."""
        started = time.monotonic()
        status, job_id = 0, None
        try:
            async with self._session.post(
                    server + "/api/jobs", data=orjson.dumps(self.body(key, **extra)),
                    headers={"Authorization": f"Bearer {self.token}",
                             "Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                status = resp.status
                if status == 503 and "Retry-After" not in resp.headers:
                    self.missing_retry_after += 1
            if status in (200, 201):
                job_id = str(orjson.loads(raw)["id"])
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            status = 0
        self.statuses[status] += 1
        submit = Submit(key, _outcome(status), job_id, server, status, started, time.monotonic())
        self.ledger.record(submit)
        return submit

    async def submit(self, key: str | None = None, **extra: Any) -> Submit:
        """Submits one job until the outcome is known (or retries run out)."""
        key = key or uuid.uuid4().hex
        submit = await self.attempt(key, self._next_server(), **extra)
        for n in range(self.retries):
            if submit.outcome in ("ok", "fail"):
                break
            await asyncio.sleep(min(0.05 * 2**n, 0.5))
            submit = await self.attempt(key, self._next_server(), **extra)
        return submit

    async def bulk(self, count: int, server: str | None = None) -> list[Submit]:
        """One atomic ``POST /api/jobs/bulk`` of ``count`` jobs, each recorded in the ledger."""
        keys = [uuid.uuid4().hex for _ in range(count)]
        server = server or self._next_server()
        started = time.monotonic()
        status = 0
        ids: list[str | None] = [None] * count
        try:
            async with self._session.post(
                    server + "/api/jobs/bulk",
                    data=orjson.dumps({"jobs": [self.body(key) for key in keys]}),
                    headers={"Authorization": f"Bearer {self.token}",
                             "Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                status = resp.status
            if status == 201:
                ids = [str(job["id"]) for job in orjson.loads(raw)["jobs"]]
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            status = 0
        self.statuses[status] += 1
        submits = [Submit(key, _outcome(status), job_id, server, status, started,
                          time.monotonic()) for key, job_id in zip(keys, ids, strict=True)]
        for submit in submits:
            self.ledger.record(submit)
        return submits

    def _next_server(self) -> str:
        return self.servers[next(self._turn) % len(self.servers)]

    async def run(self, count: int, concurrency: int = 4, pace: float = 0.0,
                  **extra: Any) -> list[Submit]:
        """Submits ``count`` jobs from ``concurrency`` loops, each pausing ``pace`` s between."""
        results: list[Submit] = []
        todo = iter(range(count))

        async def loop() -> None:
            for _ in todo:
                results.append(await self.submit(**extra))
                if pace:
                    await asyncio.sleep(pace)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return results


def _outcome(status: int) -> str:
    if status in (200, 201, 202):
        return "ok"
    if 400 <= status < 500:
        return "fail"
    if status == 503:
        return "unavailable"
    return "unknown"
