"""Real processes: a 50 MiB artifact goes in through one ``leasehold serve`` and out through
another byte-exact, with neither process's memory growing by the artifact's size; a webhook
delivery outlives a restart of every API process and is made by ``leasehold webhooks``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.processes import Child, children, leasehold, wait_for
from tests.redis_server import free_port

ADMIN = "lha_results-admin-0123456789abcdef"
SECRET = "process-webhook-secret"
SIZE = 50 << 20
CHUNK = 1 << 20
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
            "LEASEHOLD_NAMESPACE": f"res{uuid.uuid4().hex[:10]}", "LEASEHOLD_ADMIN_TOKEN": ADMIN,
            "LEASEHOLD_LOG_FORMAT": "json", "LEASEHOLD_LOG_LEVEL": "warning",
            "LEASEHOLD_WEBHOOK_SECRET": SECRET, "LEASEHOLD_WEBHOOK_ALLOW_PRIVATE": "1",
            "LEASEHOLD_WEBHOOK_POLL_SECS": "0.1", "LEASEHOLD_WEBHOOK_RETRY_BASE_SECS": "0.1"}


def serve(procs: list[Child], env: dict[str, str], log_dir: Path, name: str) -> tuple[Child, str]:
    port = free_port()
    child = leasehold(["serve", "--port", str(port)], env, log_dir, name)
    procs.append(child)
    url = f"http://127.0.0.1:{port}"
    child.wait_ready(url)
    return child, url


def pattern(n: int) -> bytes:
    """Chunk ``n`` of the artifact: distinct bytes per chunk, so a misplaced chunk shows."""
    return hashlib.sha256(n.to_bytes(4, "big")).digest() * (CHUNK // 32)


async def _body(extra: int) -> AsyncIterator[bytes]:
    for n in range(SIZE // CHUNK):
        yield pattern(n)
    if extra:
        yield b"!" * extra


@pytest.fixture
def fleet(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[list[Child], str, str]]:
    with children() as procs:
        (_, a), (_, b) = serve(procs, env, tmp_path, "serve-a"), serve(procs, env, tmp_path,
                                                                        "serve-b")
        yield procs, a, b


async def test_a_50_mib_artifact_streams_through_two_api_processes(
        fleet: tuple[list[Child], str, str]) -> None:
    procs, a, b = fleet
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(a + "/api/jobs", json={"command": "plan"}) as resp:
            job_id = (await resp.json())["id"]
        path = f"/api/jobs/{job_id}/artifacts/plan.bin"
        want = hashlib.sha256()
        for n in range(SIZE // CHUNK):
            want.update(pattern(n))

        before = rss_kib(procs[0].pid)
        async with http.put(a + path, data=_body(0),
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Length": str(SIZE)}) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["sha256"] == want.hexdigest()
        upload_growth = rss_kib(procs[0].pid) - before

        before = rss_kib(procs[1].pid)
        got, size = hashlib.sha256(), 0
        async with http.get(b + path) as resp:
            assert resp.status == 200 and resp.headers["ETag"] == f'"{want.hexdigest()}"'
            async for data in resp.content.iter_chunked(CHUNK):
                got.update(data)
                size += len(data)
        download_growth = rss_kib(procs[1].pid) - before
        assert (size, got.hexdigest()) == (SIZE, want.hexdigest())
        print(f"RSS growth: upload {upload_growth} KiB, download {download_growth} KiB")
        assert upload_growth < 20 * 1024 and download_growth < 20 * 1024

        async with http.put(a + f"/api/jobs/{job_id}/artifacts/too-big", data=_body(1),
                            headers={"Content-Length": str(SIZE + 1)}) as resp:
            assert resp.status == 413 and (await resp.json())["error"] == "artifact_too_large"
        async with http.get(b + f"/api/jobs/{job_id}/artifacts") as resp:
            assert [x["name"] for x in await resp.json()] == ["plan.bin"]


async def test_a_webhook_outlives_an_api_restart(env: dict[str, str], tmp_path: Path) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers["X-Leasehold-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        with children() as procs:
            first, a = serve(procs, env, tmp_path, "serve-1")
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(a + "/api/jobs", json={"command": "x", "result": {
                        "mode": "webhook", "webhook": {"url": hook_url}}}) as resp:
                    assert resp.status == 201
                    job_id = (await resp.json())["id"]
                async with http.post(a + "/api/workers/register", json={"worker_id": "w"}):
                    pass
                async with http.post(a + "/api/jobs/claim", json={"worker_id": "w"}) as resp:
                    lease = (await resp.json())["lease"]["lease_id"]
                async with http.post(a + f"/api/jobs/{lease}/complete", json={}) as resp:
                    assert resp.status == 200
            first.stop()  # every API process is gone between the finish and the delivery
            await asyncio.sleep(0.3)
            assert received == []
            _, b = serve(procs, env, tmp_path, "serve-2")
            procs.append(leasehold(["webhooks"], env, tmp_path, "webhooks"))
            await wait_for(lambda: received, 15, "the webhook delivery")
            body, signature = received[0]
            assert orjson.loads(body)["id"] == job_id
            assert signature == "sha256=" + hmac.new(SECRET.encode(), body,
                                                     hashlib.sha256).hexdigest()
            async with aiohttp.ClientSession(headers=AUTH) as http, \
                    http.get(b + f"/api/jobs/{job_id}") as resp:
                deliveries = (await resp.json())["webhook_deliveries"]
            assert [(d["attempt"], d["status_code"]) for d in deliveries] == [(1, 204)]
            assert len(received) == 1
    finally:
        await runner.cleanup()
