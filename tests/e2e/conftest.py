"""End-to-end fixtures: real ``leasehold serve``, ``leasehold reaper`` and ``leasehold agent``
processes against the session's private redis-server.

One server and one reaper serve a whole module (each under its own namespace); every test gets
its own queue, so queue counters and job lists are the test's alone. Every process is started in
its own session and killed at teardown, pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from leasehold.api.fleet.client import LeaseholdClient
from leasehold.scheduler.models import Job, JobStatus
from tests.processes import child_pids
from tests.redis_server import free_port

BIN = Path(sys.executable).parent / "leasehold"
READY_TIMEOUT_SECS = 20.0


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process's group, then SIGKILL it when it does not exit in time (at once
    when ``timeout`` is 0)."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
    _kill_group(proc, signal.SIGKILL)  # anything left in its group


def spawn(args: list[str], env: dict[str, str], log_dir: Path, name: str
          ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Starts ``leasehold <args>`` in a new session, its stdout and stderr going to files."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([str(BIN), *args], env=env, stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, out, err


@dataclass
class Service:
    """A running ``leasehold serve`` and ``leasehold reaper``."""

    url: str
    admin_token: str
    namespace: str
    procs: list[subprocess.Popen[bytes]]
    log_dir: Path

    def client(self, token: str | None = None) -> LeaseholdClient:
        return LeaseholdClient(self.url, token or self.admin_token, retries=2, timeout_secs=30)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"leasehold serve exited {proc.returncode}: "
                               f"{err.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/readyz not ready after {READY_TIMEOUT_SECS}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log_dir = tmp_path_factory.mktemp("e2e-service")
    port = free_port()
    namespace = f"e2e{uuid.uuid4().hex[:10]}"
    admin_token = "lha_" + secrets.token_urlsafe(24)
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url, "LEASEHOLD_NAMESPACE": namespace,
           "LEASEHOLD_ADMIN_TOKEN": admin_token, "LEASEHOLD_REAP_INTERVAL_SECS": "0.2",
           "LEASEHOLD_LOG_LEVEL": "warning"}
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        serve, _, serve_err = spawn(["serve", "--port", str(port)], env, log_dir, "serve")
        procs.append(serve)
        _wait_ready(url, serve, serve_err)
        reaper, _, _ = spawn(["reaper"], env, log_dir, "reaper")
        procs.append(reaper)
        yield Service(url, admin_token, namespace, procs, log_dir)
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout=3)  # serve waits for open long-polls; no need here


@pytest.fixture
async def client(service: Service) -> AsyncIterator[LeaseholdClient]:
    async with service.client() as api:
        yield api


@pytest.fixture
def queue() -> str:
    """A queue of the test's own."""
    return f"q{uuid.uuid4().hex[:12]}"


@dataclass
class AgentProcess:
    """One ``leasehold agent`` child; its structlog JSON lines go to ``out``."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The agent's log records so far (optionally only one kind of event)."""
        records = []
        for line in self.out.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict) and (event is None or record.get("event") == event):
                    records.append(record)
        return records

    def worker(self) -> dict[str, str]:
        """The ``worker.json`` the agent saved (worker id and worker token)."""
        saved = orjson.loads((self.state_dir / "worker.json").read_bytes())
        assert isinstance(saved, dict)
        return {str(k): str(v) for k, v in saved.items()}

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    async def wait_exit(self, within: float) -> int:
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {self.pid} still running after {within}s; "
                                     f"stderr: {self.stderr()[-2000:]}")
            await asyncio.sleep(0.05)
        return self.proc.returncode


@dataclass
class AgentFactory:
    """Starts agents against the module's service; ``stop_all`` ends them all."""

    service: Service
    tmp_path: Path
    started: list[AgentProcess] = field(default_factory=list)

    async def registration_token(self, uses: int = 1) -> str:
        async with self.service.client() as api:
            reply = await api.request("POST", "/api/registration-tokens",
                                      {"uses": uses, "ttl_secs": 600})
        token: str = reply["token"]
        return token

    async def start(self, queue: str, *, slots: int = 1, lease_ttl: float = 2.0,
                    token: str | None = None, state_dir: Path | None = None,
                    server: str | None = None, extra: tuple[str, ...] = (),
                    wait_registered: bool = True) -> AgentProcess:
        index = len(self.started)
        if token is None:
            token = await self.registration_token()
        state = state_dir or self.tmp_path / f"agent{index}"
        args = ["agent", "--server", server or self.service.url, "--token", token,
                "--slots", str(slots), "--lease-ttl", str(lease_ttl), "--state-dir", str(state),
                "--queue", queue, "--name", f"{queue}-agent{index}", "--grace", "1",
                "--drain-timeout", "30", *extra]
        proc, out, err = spawn(args, dict(os.environ), self.tmp_path / "logs", f"agent{index}")
        agent = AgentProcess(proc, state, out, err)
        self.started.append(agent)
        if wait_registered:
            await wait_until(lambda: bool(agent.events("agent_started")) or _exited(agent),
                             10, "the agent to start")
            assert agent.proc.poll() is None, f"agent exited: {agent.stderr()[-2000:]}"
        return agent

    def stop_all(self) -> None:
        """SIGKILLs every agent still running, and the process group of each job it runs."""
        for agent in self.started:
            if agent.proc.poll() is None:
                jobs = child_pids(agent.pid)  # each job's shell leads its own process group
                stop_process(agent.proc, timeout=0)
                for pgid in jobs:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)


def _exited(agent: AgentProcess) -> bool:
    return agent.proc.poll() is not None


@pytest.fixture
def agents(service: Service, tmp_path: Path) -> Iterator[AgentFactory]:
    factory = AgentFactory(service, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


async def wait_until(predicate: Callable[[], bool], within: float, what: str,
                     interval: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_async(predicate: Callable[[], Awaitable[bool]], within: float, what: str,
                     interval: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_terminal(api: LeaseholdClient, job_id: str, within: float = 15.0) -> Job:
    """The job once it reaches a terminal status."""
    deadline = time.monotonic() + within
    while True:
        job = await api.get_job(job_id)
        if job.status.terminal:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {within}s")
        await asyncio.sleep(0.1)


async def wait_status(api: LeaseholdClient, job_id: str, status: JobStatus,
                      within: float = 15.0) -> Job:
    deadline = time.monotonic() + within
    while True:
        job = await api.get_job(job_id)
        if job.status == status:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.status}, not {status}, after {within}s")
        await asyncio.sleep(0.05)
