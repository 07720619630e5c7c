"""``leasehold reaper``: the reaper process, and its ``/healthz`` when a health port is set."""

from __future__ import annotations

import asyncio
import signal

import orjson
import structlog
from aiohttp import web

from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect_settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.reaper import Reaper

log = structlog.get_logger("leasehold.reaper")


def health_app(reaper: Reaper, stale_secs: float) -> web.Application:
    """``GET /healthz``: 200 while this process's reaper finished a pass within ``stale_secs``
    (or is still in its first ``stale_secs``), else 503: a hung reaper gets restarted."""
    started = asyncio.get_running_loop().time()

    async def healthz(_request: web.Request) -> web.Response:
        age = reaper.last_pass_age_secs()
        since_start = asyncio.get_running_loop().time() - started
        healthy = age < stale_secs if age is not None else since_start < stale_secs
        body = {"status": "ok" if healthy else "stale",
                "last_pass_age_secs": None if age is None else round(age, 3),
                "stale_after_secs": stale_secs}
        return web.Response(status=200 if healthy else 503, body=orjson.dumps(body),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def run_reaper(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    reaper = Reaper(scheduler)
    runner: web.AppRunner | None = None
    try:
        if settings.reaper_health_port is not None:
            runner = web.AppRunner(health_app(reaper, settings.reaper_stale_secs),
                                   access_log=None, handle_signals=False, shutdown_timeout=1)
            await runner.setup()
            await web.TCPSite(runner, settings.host, settings.reaper_health_port).start()
            log.info("reaper_health_listening", host=settings.host,
                     port=settings.reaper_health_port, stale_after_secs=settings.reaper_stale_secs)
        await reaper.run_forever(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await redis.aclose()
