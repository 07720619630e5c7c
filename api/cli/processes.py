"""``serve --workers N``: N API processes on one port (SO_REUSEPORT), started and stopped
together by the process the operator ran.

The parent resolves what every process must share (the Redis URL, an embedded Redis it keeps
running, the admin token), then starts N ``serve --worker-process`` children; the kernel spreads
connections among them. SIGTERM or SIGINT is passed on to every child, and each shuts down as a
single process would (``LEASEHOLD_SHUTDOWN_GRACE_SECS``). When one child exits on its own, the
others are stopped and the parent exits non-zero, so a supervisor (systemd, Kubernetes) restarts
the whole set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from leasehold.scheduler.config import Settings

POLL_SECS = 0.2


def child_argv(argv: Sequence[str], index: int, with_reaper: bool) -> list[str]:
    """The parent's ``serve`` arguments for child ``index``: one process each, the reaper in
    the first only, nothing the parent already resolved (its data dir, embedded Redis)."""
    skip_value = {"--workers", "--data-dir", "--redis-url"}
    kept: list[str] = []
    items = iter(argv)
    for arg in items:
        name = arg.split("=", 1)[0]
        if name in skip_value:
            if "=" not in arg:
                next(items, None)
            continue
        if name in ("--with-reaper", "--ephemeral"):
            continue
        kept.append(arg)
    if with_reaper and index == 0:
        kept.append("--with-reaper")
    return [sys.executable, "-m", "leasehold.api.cli", *kept, "--worker-process"]


def run_children(settings: Settings, argv: Sequence[str], count: int, with_reaper: bool) -> int:
    """Runs ``count`` API processes until a signal (exit 0) or one of them exits (exit 1)."""
    env = {**os.environ, "LEASEHOLD_REDIS_URL": settings.redis_url or ""}
    if settings.admin_token:
        env["LEASEHOLD_ADMIN_TOKEN"] = settings.admin_token
    # each child in its own session: a terminal's Ctrl-C (or a signal to the parent's group)
    # reaches the parent alone, which passes exactly one on
    children = [subprocess.Popen(child_argv(argv, index, with_reaper), env=env,
                                 start_new_session=True)
                for index in range(count)]
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    crashed = False

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(POLL_SECS)
        if not stopping:  # a child exited on its own: stop the rest
            crashed = True
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + settings.shutdown_grace_secs + 5
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if crashed else 0
