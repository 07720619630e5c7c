"""The ``leasehold`` command: ``serve``, ``reaper`` and the other processes of SPEC §6."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import structlog

from scheduler.config import Settings
from scheduler.connection import connect_settings
from scheduler.core import Scheduler
from scheduler.reaper import Reaper

log = structlog.get_logger("leasehold")


async def run_reaper(settings: Settings) -> None:
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Reaper(scheduler).run_forever(stop)
    finally:
        await redis.aclose()


def _reaper(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    if args.interval:
        overrides["reap_interval_secs"] = args.interval
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if settings.redis_url is None:
        print("leasehold reaper: set LEASEHOLD_REDIS_URL or --redis-url", file=sys.stderr)
        return 2
    asyncio.run(run_reaper(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leasehold", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    reaper = commands.add_parser("reaper", help="expire leases, promote delayed jobs, purge results")
    reaper.add_argument("--redis-url", help="default: LEASEHOLD_REDIS_URL")
    reaper.add_argument("--interval", type=float, help="seconds between passes (default 1)")
    reaper.set_defaults(func=_reaper)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
