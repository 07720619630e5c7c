"""The ``leasehold`` command: serve, reaper, agent, bench, token and webhooks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from aiohttp import web

from leasehold import __version__
from leasehold.api.app import create_app
from leasehold.api.cli import secrets as secrets_cli
from leasehold.api.cli import token as token_cli
from leasehold.api.cli import webhooks as webhooks_cli
from leasehold.api.cli.processes import run_children
from leasehold.api.cli.reaper import run_reaper
from leasehold.api.cli.startup import (
    LocalState,
    StartupError,
    admin_token,
    banner,
    check_server_url,
    load_settings,
    open_redis,
    wait_for_redis_or_fail,
)
from leasehold.api.server import shutdown
from leasehold.api.server.logging import configure_logging
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect_settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.reaper import Reaper

_FLAGS = {"redis_url": "--redis-url", "host": "--host", "port": "--port",
          "reap_interval_secs": "--interval", "reaper_health_port": "--health-port"}


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in _FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_auth", False):
        overrides["auth"] = False
    return load_settings(overrides, _FLAGS)


async def _reaper_task(settings: Settings) -> AsyncIterator[None]:
    redis = connect_settings(settings)
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    stop = asyncio.Event()
    task = asyncio.create_task(Reaper(scheduler).run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await redis.aclose()


def _reaper(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    if settings.redis_url is None:
        raise StartupError("LEASEHOLD_REDIS_URL is not set: set it, or give --redis-url")
    wait_for_redis_or_fail(settings, "reaper")
    asyncio.run(run_reaper(settings))
    return 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (a large share of the per-request cost), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format, with_pid=args.worker_process)
    if not settings.auth and not _is_loopback(settings.host) and not settings.allow_insecure:
        raise StartupError(f"refusing to run without auth on {settings.host}; bind to "
                           "127.0.0.1 or set LEASEHOLD_ALLOW_INSECURE=1")
    if args.workers > 1 and args.ephemeral:
        raise StartupError("--workers needs a Redis every process reaches: not --ephemeral")
    if args.workers > 1 and settings.port == 0:
        raise StartupError("--workers needs a fixed --port (each process binds the same one)")
    state = LocalState(Path(args.data_dir))
    try:
        settings = open_redis(settings, state, args.ephemeral)
        settings = admin_token(settings, state)
        lines = _banner_lines(settings, state, args.workers)
        if args.workers > 1:
            banner(lines)
            return run_children(settings, args.argv, args.workers, args.with_reaper)
        _run_app(settings, [] if args.worker_process else lines, args.with_reaper,
                 reuse_port=args.worker_process)
    finally:
        state.close()
    return 0


def _banner_lines(settings: Settings, state: LocalState, processes: int) -> list[str]:
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"Leasehold is serving {base}  (API docs: {base}/docs)", *state.notes]
    if processes > 1:
        lines.append(f"API processes: {processes} on one port")
    if not settings.auth:
        lines.append("Auth is OFF (local development only)")
    return lines


def _run_app(settings: Settings, lines: list[str], with_reaper: bool,
             reuse_port: bool = False) -> None:
    app = create_app(settings)
    if with_reaper:
        app.cleanup_ctx.append(lambda _app: _reaper_task(settings))

    async def announce(_app: web.Application) -> None:
        banner(lines)

    app.on_startup.append(announce)
    # Thousands of live viewers churn many short-lived objects: rarer, cheaper collections keep
    # full-GC pauses (150+ ms) out of log delivery; start-up objects never need scanning again.
    gc.freeze()
    gc.set_threshold(5000, 10, 10)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(shutdown.serve(app, settings.host, settings.port,
                                  settings.shutdown_grace_secs, reuse_port=reuse_port))


def _agent(args: argparse.Namespace) -> int:
    from leasehold.api.fleet.agent import Agent, AgentConfig
    from leasehold.api.fleet.client import LeaseholdError, Unauthorized, Unavailable

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    server = args.server or os.environ.get("LEASEHOLD_SERVER")
    token = args.token or os.environ.get("LEASEHOLD_TOKEN")
    if not server or not token:
        raise StartupError("give --server and --token (or LEASEHOLD_SERVER and LEASEHOLD_TOKEN)")
    check_server_url(server)
    config = AgentConfig(
        server=server, token=token, slots=args.slots, labels=args.label or [],
        queues=args.queue or ["default"], lease_ttl_secs=args.lease_ttl,
        state_dir=Path(args.state_dir), name=args.name, grace_secs=args.grace,
        drain_timeout_secs=args.drain_timeout,
        non_retryable_exit_codes=frozenset(args.non_retryable_exit_code or []))
    agent = Agent(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stopping.set)
        await agent.run()

    try:
        asyncio.run(main())
    except Unauthorized as exc:
        print(f"leasehold agent: the server refused the token ({exc.message})", file=sys.stderr)
        return 3
    except Unavailable as exc:
        print(f"leasehold agent: the server is unavailable: {exc.message}", file=sys.stderr)
        return 1
    except LeaseholdError as exc:
        print(f"leasehold agent: {exc}", file=sys.stderr)
        return 1
    return 0


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("give concurrency levels like 1,4,16,64") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be ≥ 1")
    return levels


def _bench(args: argparse.Namespace) -> int:
    from leasehold.api.cli.bench import BenchConfig
    from leasehold.api.cli.bench import main as bench_main

    return bench_main(BenchConfig(
        server=args.server, token=args.token or os.environ.get("LEASEHOLD_TOKEN"),
        redis_url=args.redis_url, jobs=args.jobs, workers=args.workers, batch=args.batch,
        batch_workers=args.batch_workers, api_processes=args.api_processes,
        concurrency=args.concurrency or [], latency_samples=args.latency_samples,
        json_out=Path(args.json) if args.json else None, auth=not args.no_auth))


_DESCRIPTION = """Leasehold: a Redis-backed, lease-based job scheduler service.

Commands:
  serve    run the HTTP API (with no Redis URL, on an embedded Redis)
  reaper   expire leases, promote delayed jobs, mark workers offline, purge old results
  agent    a worker: claim jobs, run each job's command, stream its output
  bench    measure throughput and latency over HTTP
  token    make an admin token; create or delete API and registration tokens

Run "leasehold COMMAND --help" for a command's options. Settings come from LEASEHOLD_*
environment variables; a flag overrides its variable."""


class _Parser(argparse.ArgumentParser):
    """A wrong flag is one line naming it (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
        return value

    parse.__name__ = kind.__name__
    return parse


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has one) and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             text: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=text, description=text, formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leasehold", description=_DESCRIPTION,
                                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"leasehold {__version__}")
    # every subcommand's parser is a _Parser too (one-line errors)
    commands = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
                    parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    serve = _command(commands, "serve", "run the HTTP API")
    serve.add_argument("--host", help="address to listen on (LEASEHOLD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (LEASEHOLD_PORT; default 8080)")
    serve.add_argument("--redis-url", help="Redis to use (LEASEHOLD_REDIS_URL; default: an "
                       "embedded Redis for the life of the process)")
    serve.add_argument("--no-auth", action="store_true",
                       help="accept requests without tokens (loopback addresses only)")
    serve.add_argument("--with-reaper", action="store_true", help="run a reaper in-process")
    serve.add_argument("--workers", type=_positive(int), default=1,
                       help="API processes sharing the port (SO_REUSEPORT; needs a real Redis)")
    serve.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--data-dir", default=os.environ.get("LEASEHOLD_DATA_DIR", ".leasehold"),
                       help="where the embedded Redis keeps its data, the admin token and "
                       "the lock that allows one serve per directory (LEASEHOLD_DATA_DIR)")
    serve.add_argument("--ephemeral", action="store_true",
                       help="without a Redis URL: keep everything in this process (in-process "
                       "fake Redis, lost at exit) instead of an embedded redis-server")
    serve.set_defaults(func=_serve)

    reaper = _command(commands, "reaper",
                      "expire leases, promote delayed jobs, mark workers offline, purge results")
    reaper.add_argument("--redis-url", help="Redis to use (LEASEHOLD_REDIS_URL)")
    reaper.add_argument("--interval", dest="reap_interval_secs", type=float,
                        help="seconds between passes (LEASEHOLD_REAP_INTERVAL_SECS; default 1)")
    reaper.add_argument("--health-port", dest="reaper_health_port", type=int,
                        help="serve GET /healthz on this port, on LEASEHOLD_HOST: 503 once no "
                        "pass finished for LEASEHOLD_REAPER_STALE_SECS (LEASEHOLD_REAPER_"
                        "HEALTH_PORT; default: none)")
    reaper.set_defaults(func=_reaper)

    agent = _command(commands, "agent", "run jobs' commands as a worker")
    agent.add_argument("--server", help="API URL (LEASEHOLD_SERVER)")
    agent.add_argument("--token", help="registration token on first start, else a worker token "
                       "(LEASEHOLD_TOKEN)")
    agent.add_argument("--slots", type=_positive(int), default=1, help="jobs run at once")
    agent.add_argument("--label", action="append", help="a label this worker has (repeat)")
    agent.add_argument("--queue", action="append", help="a queue to claim from (repeat; "
                       "default: the queue named default)")
    agent.add_argument("--lease-ttl", type=_positive(float), default=30.0,
                       help="lease TTL in seconds")
    agent.add_argument("--state-dir", default=".leasehold-agent",
                       help="where the worker token is kept after registration")
    agent.add_argument("--name", help="worker name (default: host-pid)")
    agent.add_argument("--grace", type=_positive(float), default=10.0,
                       help="seconds between SIGTERM and SIGKILL of a stopped job")
    agent.add_argument("--drain-timeout", type=_positive(float), default=300.0,
                       help="on SIGTERM, seconds to let running jobs finish before release")
    agent.add_argument("--non-retryable-exit-code", type=int, action="append",
                       help="an exit code that fails the job for good (repeat)")
    agent.set_defaults(func=_agent)

    bench = _command(commands, "bench", "measure throughput and latency over HTTP")
    bench.add_argument("--server", help="a running server, or several API processes of one "
                       "Redis comma-separated (default: start a private one)")
    bench.add_argument("--token", help="admin token for --server (LEASEHOLD_TOKEN)")
    bench.add_argument("--no-auth", action="store_true",
                       help="without --server: run the API processes with auth off (default: "
                       "on, workers with their own tokens, as users run it)")
    bench.add_argument("--jobs", type=int, default=10_000, help="jobs per burn-down")
    bench.add_argument("--workers", type=int, default=64, help="concurrent simulated workers")
    bench.add_argument("--batch", type=int, default=50, help="max_jobs of the batch mode")
    bench.add_argument("--redis-url", help="with --server: the Redis to read CPU and memory "
                       "from (default: not measured)")
    bench.add_argument("--api-processes", type=int, default=1,
                       help="API processes of the private server, sharing its Redis")
    bench.add_argument("--batch-workers", type=int, default=8,
                       help="concurrent workers of the batch mode")
    bench.add_argument("--concurrency", type=_levels, metavar="N,N,...",
                       help="also sweep claim→complete throughput over these worker counts")
    bench.add_argument("--latency-samples", type=int, default=200,
                       help="submits of the submit→claim long-poll latency phase")
    bench.add_argument("--json", help="also write the results as JSON to this file (- for "
                       "stdout, the table then goes to stderr)")
    bench.set_defaults(func=_bench)

    token_cli.add_parser(commands, _Help)
    secrets_cli.add_parser(commands, _Help)
    webhooks_cli.add_parser(commands, _Help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    try:
        code: int = args.func(args)
    except StartupError as exc:
        print(f"leasehold {args.command}: {exc}", file=sys.stderr)
        return exc.code
    return code


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
