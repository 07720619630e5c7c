"""Bounded shutdown: readiness fails at once, waiting claims and live streams end, in-flight
requests finish, and the process is gone within the grace period; one log line per phase."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import structlog
from aiohttp import web

from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.sse import close_live_streams

log = structlog.get_logger("leasehold.shutdown")

CLOSE_MARGIN_SECS = 1.0  # kept from the grace for closing Redis and the in-process reaper


@dataclass
class ShutdownState:
    started: float | None = None  # time.monotonic() of the signal
    released: bool = False

    def elapsed(self) -> float:
        return round(time.monotonic() - (self.started or time.monotonic()), 3)


SHUTDOWN = web.AppKey("shutdown", ShutdownState)


def install(app: web.Application) -> None:
    app[SHUTDOWN] = ShutdownState()
    app.on_shutdown.append(release_waiters)
    # before the services close: by then every request handler has finished or been cancelled
    app.on_cleanup.insert(0, _requests_finished)


def shutting_down(app: web.Application) -> bool:
    return app[SHUTDOWN].started is not None


async def _requests_finished(app: web.Application) -> None:
    state = app[SHUTDOWN]
    if state.started is not None:
        log.info("shutdown_requests_finished", elapsed_secs=state.elapsed())


async def release_waiters(app: web.Application) -> None:
    """Readiness fails from now on; waiting claims answer empty; every SSE stream gets
    ``event: shutdown`` and ends. Runs once, however often it is called."""
    state = app[SHUTDOWN]
    if state.started is None:
        state.started = time.monotonic()
    if state.released:
        return
    state.released = True
    claims = app[SERVICES].waiters.close() if SERVICES in app else 0
    streams = await close_live_streams(app)
    log.info("shutdown_waiters_released", waiting_claims=claims, sse_streams=streams)


async def serve(app: web.Application, host: str, port: int, grace_secs: float,
                reuse_port: bool = False) -> None:
    """Serves ``app`` until SIGTERM or SIGINT, then shuts down within ``grace_secs``
    (``reuse_port``: one of several processes on the port)."""
    # aiohttp waits this long for handlers, then cancels them and waits as long again
    handler_secs = max(0.1, (grace_secs - CLOSE_MARGIN_SECS) / 2)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=handler_secs,
                           # a long-poll claim whose client went away must not lease jobs to nobody
                           handler_cancellation=True)
    await runner.setup()
    received: list[str] = []
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        await stop.wait()
    except BaseException:
        await runner.cleanup()
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    await _shut_down(app, runner, received[0], grace_secs)


async def _shut_down(app: web.Application, runner: web.AppRunner, cause: str,
                     grace_secs: float) -> None:
    state = app[SHUTDOWN]
    state.started = time.monotonic()
    elapsed = state.elapsed
    log.info("shutdown_started", signal=cause, grace_secs=grace_secs)
    await release_waiters(app)
    try:
        async with asyncio.timeout(max(0.1, grace_secs - elapsed() - 0.2)):
            await runner.cleanup()
    except TimeoutError:
        log.warning("shutdown_forced", elapsed_secs=elapsed(),
                    hint="raise LEASEHOLD_SHUTDOWN_GRACE_SECS or shorten sync waits")
        return
    log.info("shutdown_finished", elapsed_secs=elapsed())
