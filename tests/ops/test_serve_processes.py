"""``leasehold serve --workers N``: N API processes share one port and stop together."""

from __future__ import annotations

import os
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.processes import child_pids, children, leasehold, wait_for
from tests.redis_server import free_port

ADMIN = "lha_processes-admin-5d1c9e27b4"


def _env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "LEASEHOLD_REDIS_URL": redis_url, "LEASEHOLD_ADMIN_TOKEN": ADMIN,
            "LEASEHOLD_NAMESPACE": f"mp{uuid.uuid4().hex[:8]}", "LEASEHOLD_LOG_LEVEL": "info",
            "LEASEHOLD_SHUTDOWN_GRACE_SECS": "3"}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _me(url: str) -> int:
    request = urllib.request.Request(url + "/api/me", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return int(reply.status)


async def test_n_processes_serve_one_port_and_stop_together(redis_url: str,
                                                          tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with children() as procs:
        parent = leasehold(["serve", "--port", str(port), "--workers", "2", "--with-reaper"],
                           _env(redis_url), tmp_path, "serve")
        procs.append(parent)
        parent.wait_ready(url)
        await wait_for(lambda: len(child_pids(parent.pid)) == 2, 10, "two API processes")
        workers = child_pids(parent.pid)

        def both_served() -> bool:  # a process still starting takes no connection yet
            assert all(_me(url) == 200 for _ in range(10))
            served = {record.get("pid") for record in parent.logs("request")}
            return served >= set(workers)

        # the kernel spreads the connections: both processes log requests
        await wait_for(both_served, 20, "requests served by both processes", interval=0.2)
        assert "API processes: 2 on one port" in parent.stderr()
        parent.proc.send_signal(signal.SIGTERM)  # the parent alone, as an init system would
        assert await parent.wait_exit(within=10) == 0
        assert not any(_running(pid) for pid in workers)


async def test_one_process_dying_stops_the_set_for_a_restart(redis_url: str,
                                                             tmp_path: Path) -> None:
    port = free_port()
    with children() as procs:
        parent = leasehold(["serve", "--port", str(port), "--workers", "2"],
                           _env(redis_url), tmp_path, "serve")
        procs.append(parent)
        parent.wait_ready(f"http://127.0.0.1:{port}")
        await wait_for(lambda: len(child_pids(parent.pid)) == 2, 10, "two API processes")
        first, second = child_pids(parent.pid)
        os.kill(first, signal.SIGKILL)
        assert await parent.wait_exit(within=10) == 1
        assert not _running(second)


@pytest.mark.parametrize("extra", [["--ephemeral"], ["--port", "0"]])
async def test_workers_need_a_shared_redis_and_a_fixed_port(redis_url: str, tmp_path: Path,
                                                            extra: list[str]) -> None:
    env = _env(redis_url)
    if extra == ["--ephemeral"]:
        del env["LEASEHOLD_REDIS_URL"]
    with children() as procs:
        serve = leasehold(["serve", "--workers", "2", *extra], env, tmp_path, "serve")
        procs.append(serve)
        assert await serve.wait_exit(within=20) != 0
        assert "--workers needs" in serve.stderr()
