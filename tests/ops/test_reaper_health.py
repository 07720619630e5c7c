"""Reaper health: ``leasehold reaper`` serves /healthz (503 once its passes stop, as when Redis
hangs), every pass is recorded in Redis for /readyz and /metrics of any API process."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from pytest_aiohttp import AiohttpClient

from leasehold.api.app import create_app
from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.config import Settings
from leasehold.scheduler.reaper import Reaper
from tests.ops.scrape import parse, value
from tests.processes import children, leasehold, wait_for
from tests.redis_server import RedisServer, free_port


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def test_reaper_healthz_turns_503_when_passes_stop_and_200_when_they_resume(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    port = free_port()
    env = {**os.environ, "LEASEHOLD_REDIS_URL": server.url, "LEASEHOLD_LOG_FORMAT": "json",
           "LEASEHOLD_REAP_INTERVAL_SECS": "0.2", "LEASEHOLD_REAPER_HEALTH_PORT": str(port),
           "LEASEHOLD_REAPER_STALE_SECS": "1.5"}
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with children() as procs:
            procs.append(leasehold(["reaper"], env, tmp_path, "reaper"))
            async with aiohttp.ClientSession() as session:

                async def status_is(expected: int) -> bool:
                    try:
                        status, body = await _health(session, url)
                    except aiohttp.ClientError:
                        return False
                    return status == expected and body["last_pass_age_secs"] is not None

                await wait_for(lambda: status_is(200), within=20, what="a healthy reaper")
                _, body = await _health(session, url)
                assert body["status"] == "ok" and body["last_pass_age_secs"] < 1.5
                server.proc.send_signal(signal.SIGSTOP)  # Redis hangs: no pass can finish
                try:
                    await wait_for(lambda: status_is(503), within=10, what="a stale reaper")
                    _, body = await _health(session, url)
                    assert body["status"] == "stale" and body["last_pass_age_secs"] >= 1.5
                finally:
                    server.proc.send_signal(signal.SIGCONT)
                await wait_for(lambda: status_is(200), within=10, what="a recovered reaper")
    finally:
        server.stop()


async def test_readyz_and_metrics_report_the_last_reaper_pass(
        aiohttp_client: AiohttpClient, settings: Settings) -> None:
    fresh = settings.model_copy(update={"auth": False, "namespace": f"rh{uuid.uuid4().hex[:8]}"})
    client = await aiohttp_client(create_app(fresh))
    before = await (await client.get("/readyz")).json()
    assert before == {"status": "ready", "reaper_last_pass_age_secs": None}

    await Reaper(client.app[SERVICES].scheduler).run_once()
    await asyncio.sleep(0.2)
    after = await (await client.get("/readyz")).json()
    assert 0.1 <= after["reaper_last_pass_age_secs"] < 5
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "leasehold_reaper_pass_duration_seconds") > 0
    assert value(samples, "leasehold_reaper_last_pass_timestamp_seconds") > 0
    assert value(samples, "leasehold_redis_used_memory_bytes") > 0
    assert value(samples, "leasehold_redis_maxmemory_bytes") >= 0
