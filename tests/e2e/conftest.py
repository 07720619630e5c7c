"""End-to-end fixtures: real ``leasehold serve``, ``leasehold reaper`` and ``leasehold agent``
processes against the session's private redis-server.

One server and one reaper serve a whole module (each under its own namespace); every test gets
its own queue, so queue counters and job lists are the test's alone. Every process is started in
its own session and killed at teardown, pass or fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from leasehold.api.fleet.client import LeaseholdClient
from leasehold.scheduler.models import Job, JobStatus
from tests.processes import Child, children, leasehold
from tests.redis_server import free_port

SECRETS_KEY = "n5yQXnq1m3Y7q2bZ8Gf4vK0sR6tW9pL1cE3hJ5uA7dM="


@dataclass
class Service:
    """A running ``leasehold serve`` and ``leasehold reaper``."""

    url: str
    admin_token: str
    namespace: str
    procs: list[Child]
    log_dir: Path

    def client(self, token: str | None = None) -> LeaseholdClient:
        return LeaseholdClient(self.url, token or self.admin_token, retries=2, timeout_secs=30)


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log_dir = tmp_path_factory.mktemp("e2e-service")
    port = free_port()
    namespace = f"e2e{uuid.uuid4().hex[:10]}"
    admin_token = "lha_" + secrets.token_urlsafe(24)
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url, "LEASEHOLD_NAMESPACE": namespace,
           "LEASEHOLD_ADMIN_TOKEN": admin_token, "LEASEHOLD_REAP_INTERVAL_SECS": "0.2",
           "LEASEHOLD_LOG_LEVEL": "warning", "LEASEHOLD_SECRETS_KEY": SECRETS_KEY}
    url = f"http://127.0.0.1:{port}"
    with children() as procs:
        serve = leasehold(["serve", "--port", str(port)], env, log_dir, "serve")
        procs.append(serve)
        serve.wait_ready(url)
        procs.append(leasehold(["reaper"], env, log_dir, "reaper"))
        yield Service(url, admin_token, namespace, procs, log_dir)


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
    """One ``leasehold agent`` child and the state directory it keeps its worker token in."""

    child: Child
    state_dir: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    @property
    def pid(self) -> int:
        return self.child.pid

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The agent's log records so far (optionally only one kind of event)."""
        return self.child.logs(event)

    def worker(self) -> dict[str, str]:
        """The ``worker.json`` the agent saved (worker id and worker token)."""
        saved = orjson.loads((self.state_dir / "worker.json").read_bytes())
        assert isinstance(saved, dict)
        return {str(k): str(v) for k, v in saved.items()}

    def stderr(self) -> str:
        return self.child.stderr()

    async def wait_exit(self, within: float) -> int:
        return await self.child.wait_exit(within)


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
        child = leasehold(args, dict(os.environ), self.tmp_path / "logs", f"agent{index}")
        agent = AgentProcess(child, state)
        self.started.append(agent)
        if wait_registered:
            await wait_until(lambda: bool(agent.events("agent_started")) or _exited(agent),
                             10, "the agent to start")
            assert agent.proc.poll() is None, f"agent exited: {agent.stderr()[-2000:]}"
        return agent

    def stop_all(self) -> None:
        """SIGKILLs every agent still running, and the process group of each job it runs."""
        for agent in self.started:
            agent.child.kill_tree()


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
