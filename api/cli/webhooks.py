"""``leasehold webhooks``: delivers finished webhook jobs (signed POSTs, retried with backoff,
each attempt recorded on the job) and sweeps artifact files of purged jobs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import socket
import time
from typing import Any

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult

from leasehold.api.cli.startup import StartupError, load_settings, wait_for_redis_or_fail
from leasehold.api.server.http import respond
from leasehold.api.server.logging import configure_logging
from leasehold.scheduler import errors, webhooks
from leasehold.scheduler.artifacts import FileBackend, backend_for
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect_settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.webhooks import Delivery, WebhookDeliveries

log = structlog.get_logger("leasehold.webhooks")
SWEEP_SECS = 60.0
CONCURRENCY = 16


class CheckedResolver(AbstractResolver):
    """Resolves once and refuses non-public addresses; the connection then goes to exactly the
    addresses checked here (no second lookup a DNS rebinding could change)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        target = await webhooks.check_url(f"http://{_bracket(host)}:{port}/", self.allow_private)
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=_family(address), proto=0,
                              flags=socket.AI_NUMERICHOST) for address in target.addresses]

    async def close(self) -> None:
        return None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


class Deliverer:
    """Takes due deliveries from every queue, POSTs each once, records the outcome."""

    def __init__(self, scheduler: Scheduler, settings: Settings) -> None:
        if not settings.webhook_secret:
            raise StartupError("LEASEHOLD_WEBHOOK_SECRET is not set: deliveries are signed with it")
        self.scheduler = scheduler
        self.settings = settings
        self.secret = settings.webhook_secret
        self.deliveries = WebhookDeliveries(scheduler, settings)

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(self.settings.webhook_allow_private), use_dns_cache=False,
            limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_secs,
                                        connect=min(3.0, self.settings.webhook_timeout_secs))
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def run(self, stop: asyncio.Event) -> None:
        sweeper = backend_for(self.scheduler, self.settings)
        last_sweep = 0.0
        async with self.session() as session:
            while not stop.is_set():
                try:
                    await self.pass_once(session)
                    if isinstance(sweeper, FileBackend) and \
                            time.monotonic() - last_sweep > SWEEP_SECS:
                        last_sweep = time.monotonic()
                        await sweeper.sweep(self.scheduler)
                except errors.BACKEND_ERRORS as exc:
                    log.warning("webhooks_backend_unavailable", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.webhook_poll_secs)

    async def pass_once(self, session: aiohttp.ClientSession) -> int:
        """Delivers every due attempt once; the number of attempts made."""
        due = await self.deliveries.take_all()
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(delivery: Delivery) -> None:
            async with limit:
                await self.deliver(session, delivery)

        await asyncio.gather(*(one(d) for d in due))
        return len(due)

    async def deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        try:
            job = await self.scheduler.get(delivery.job_id)
        except errors.JobNotFound:
            return  # purged meanwhile; record forgets it on the next take
        body = respond(job).body
        assert isinstance(body, bytes)
        headers = {**delivery.headers, "Content-Type": "application/json",
                   webhooks.SIGNATURE_HEADER: webhooks.signature(self.secret, body),
                   "X-Leasehold-Delivery-Attempt": str(delivery.attempt)}
        status: int | None = None
        error = ""
        try:
            host, _port = webhooks.parse_url(delivery.url)
            if _is_address(host):  # aiohttp connects to an address without asking the resolver
                await webhooks.check_url(delivery.url, self.settings.webhook_allow_private)
            async with session.post(delivery.url, data=body, headers=headers,
                                    allow_redirects=False) as resp:
                status = resp.status
        except webhooks.WebhookRefused as exc:
            error = exc.message
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        again = await self.deliveries.record(delivery, status, error)
        log.info("webhook_attempt", job_id=delivery.job_id, attempt=delivery.attempt,
                 status_code=status, error=error or None, retry=again)


async def run_webhooks(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    try:
        deliverer = Deliverer(scheduler, settings)
        await scheduler.start()
        log.info("webhooks_started")
        await deliverer.run(stop)
    finally:
        await redis.aclose()


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    settings = load_settings(overrides, {"redis_url": "--redis-url"})
    configure_logging(settings.log_level, settings.log_format)
    if settings.redis_url is None:
        raise StartupError("LEASEHOLD_REDIS_URL is not set: set it, or give --redis-url")
    if not settings.webhook_secret:
        raise StartupError("LEASEHOLD_WEBHOOK_SECRET is not set: deliveries are signed with it")
    wait_for_redis_or_fail(settings, "webhooks")
    asyncio.run(run_webhooks(settings))
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               formatter: type[argparse.HelpFormatter]) -> None:
    text = "deliver webhook results of finished jobs; sweep artifact files of purged jobs"
    parser = commands.add_parser("webhooks", help=text, description=text,
                                 formatter_class=formatter)
    parser.add_argument("--redis-url", help="Redis to use (LEASEHOLD_REDIS_URL)")
    parser.set_defaults(func=_run)

