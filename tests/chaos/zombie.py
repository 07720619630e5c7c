"""A test worker for the zombie scenario: registers, claims one job, heartbeats until a call is
refused, then tries every other lease-bound call once; each call is a JSON line in ``out``.

Run as ``python -m tests.chaos.zombie SERVER REGISTRATION_TOKEN QUEUE OUT``. ``t`` is
``time.monotonic()``, which every process on the host shares, so the test can tell the calls
made after it resumed the process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import orjson

HEARTBEAT_SECS = 0.2
LEASE_TTL_SECS = 1.0


class Zombie:
    def __init__(self, session: aiohttp.ClientSession, server: str, out: BinaryIO) -> None:
        self.session = session
        self.server = server
        self.out = out
        self.token = ""

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(record) + b"\n")
        self.out.flush()

    async def post(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.post(self.server + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def call(self, lease_id: str, call: str, body: Any) -> int:
        started = time.monotonic()
        status, reply = await self.post(f"/api/jobs/{lease_id}/{call}", body)
        error = reply.get("error") if isinstance(reply, dict) else None
        self.write({"t": started, "call": call, "status": status, "error": error})
        return status

    async def run(self, registration_token: str, queue: str) -> None:
        status, registered = await self.post("/api/workers/register", {"labels": []},
                                             registration_token)
        assert status == 201, registered
        self.token = registered["worker_token"]
        status, claimed = await self.post("/api/jobs/claim", {
            "worker_id": registered["worker_id"], "labels": [], "queues": [queue],
            "lease_ttl_secs": LEASE_TTL_SECS, "wait_secs": 10})
        assert status == 200 and claimed, claimed
        lease_id = claimed["lease"]["lease_id"]
        self.write({"event": "claimed", "lease_id": lease_id, "job_id": claimed["job"]["id"]})
        for _ in range(1000):  # heartbeats until refused (bounded: this is a test process)
            if await self.call(lease_id, "heartbeat", {}) != 200:
                break
            await asyncio.sleep(HEARTBEAT_SECS)
        # a real worker stops here; this one checks that nothing else gets through either
        await self.call(lease_id, "logs", {"chunks": [{"data": "zombie", "sequence": 0}]})
        await self.call(lease_id, "complete", {"outputs": {"by": "zombie"}})
        await self.call(lease_id, "fail", {"error": "zombie", "retryable": True})
        await self.call(lease_id, "release", None)


async def main(server: str, registration_token: str, queue: str, out: Path) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        with out.open("ab") as stream:
            await Zombie(session, server, stream).run(registration_token, queue)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
