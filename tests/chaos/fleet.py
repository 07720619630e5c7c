"""Real processes for the chaos tests: redis-server, ``leasehold serve``, ``reaper`` and ``agent``,
each in its own session so one signal reaches it (and only it); ``Lab.close`` kills them all."""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leasehold.api.fleet.client import LeaseholdClient
from tests.processes import BIN, Child, http_ready, wait_for
from tests.redis_server import RedisServer, free_port

REAP_INTERVAL_SECS = 0.2
LEASE_TTL_SECS = 1.0


@dataclass
class Agent:
    """A ``leasehold agent``; each job's shell leads its own session, so killing the agent
    like a dead host means killing those groups too."""

    proc: Child

    def kill(self) -> None:
        self.proc.kill_tree()

    def started(self) -> list[dict[str, Any]]:
        return self.proc.logs("job_started")

    @property
    def worker_id(self) -> str:
        found = self.proc.logs("agent_started")
        return str(found[0]["worker_id"]) if found else ""


class ChaosRedis:
    """A private redis-server that can be killed with SIGKILL and started again on its port."""

    def __init__(self, data_dir: Path, *flags: str) -> None:
        self.data_dir = data_dir
        self.flags = flags
        self.server: RedisServer | None = RedisServer(data_dir, *flags)
        self.port = self.server.port
        self.url = self.server.url

    def kill(self) -> None:
        if self.server is not None:
            self.server.proc.kill()
            self.server.proc.wait()
            self.server = None

    def restart(self) -> None:
        self.kill()
        self.server = RedisServer(self.data_dir, *self.flags, port=self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class Fleet:
    """The service processes of one test, over one namespace of one Redis."""

    redis_url: str
    log_dir: Path
    namespace: str = field(default_factory=lambda: f"cx{uuid.uuid4().hex[:10]}")
    admin_token: str = field(default_factory=lambda: "lha_" + secrets.token_urlsafe(24))
    procs: list[Child] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    servers: dict[str, Child] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "LEASEHOLD_REDIS_URL": self.redis_url,
                "LEASEHOLD_NAMESPACE": self.namespace, "LEASEHOLD_ADMIN_TOKEN": self.admin_token,
                "LEASEHOLD_REAP_INTERVAL_SECS": str(REAP_INTERVAL_SECS),
                "LEASEHOLD_LOG_LEVEL": "info", "LEASEHOLD_LOG_FORMAT": "json",
                "LEASEHOLD_EVENTS_MAXLEN": "1000000", **self.extra_env}

    def _spawn(self, args: list[str], name: str) -> Child:
        proc = Child([str(BIN), *args], self.env, self.log_dir, name)
        self.procs.append(proc)
        return proc

    async def serve(self, port: int | None = None) -> str:
        """Starts ``leasehold serve`` (again, on the same port when given); returns its URL."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        proc = self._spawn(["serve", "--port", str(port)], f"serve-{port}")
        self.servers[url] = proc
        await wait_for(lambda: http_ready(url) or not proc.alive(), 20, f"{url} to be ready")
        assert proc.alive(), proc.stderr()
        return url

    def kill_server(self, url: str) -> None:
        self.servers[url].kill()

    async def restart_server(self, url: str) -> None:
        self.servers[url].kill()
        await self.serve(int(url.rsplit(":", 1)[1]))

    def reaper(self, interval: float | None = None) -> Child:
        args = ["reaper"] + (["--interval", str(interval)] if interval else [])
        return self._spawn(args, f"reaper-{len(self.procs)}")

    def client(self, url: str, token: str | None = None) -> LeaseholdClient:
        return LeaseholdClient(url, token or self.admin_token, retries=8, timeout_secs=10)

    async def registration_token(self, url: str) -> str:
        async with self.client(url) as admin:
            reply = await admin.request("POST", "/api/registration-tokens",
                                        {"ttl_secs": 600, "uses": 1})
        return str(reply["token"])

    async def agent(self, url: str, queue: str, *, slots: int = 2,
                    lease_ttl: float = LEASE_TTL_SECS, wait: bool = True) -> Agent:
        token = await self.registration_token(url)
        name = f"agent-{len(self.agents)}"
        state = self.log_dir / f"{name}-state"
        proc = self._spawn(["agent", "--server", url, "--token", token, "--slots", str(slots),
                            "--lease-ttl", str(lease_ttl), "--state-dir", str(state),
                            "--queue", queue, "--name", f"{self.namespace}-{name}",
                            "--grace", "0.2", "--drain-timeout", "5"], name)
        agent = Agent(proc)
        self.agents.append(agent)
        if wait:
            await wait_for(lambda: bool(proc.logs("agent_started")) or not proc.alive(), 15,
                           f"{name} to start")
            assert proc.alive(), proc.stderr()
        return agent

    def python(self, module: str, args: list[str], name: str) -> Child:
        """``python -m <module>`` (a test worker) with the fleet's environment."""
        proc = Child([sys.executable, "-m", module, *args], self.env, self.log_dir, name)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()
        for proc in reversed(self.procs):
            proc.stop(timeout=2)


@dataclass
class Lab:
    """Owns every Redis and fleet a test starts; ``aclose`` runs at teardown, pass or fail."""

    root: Path
    redises: list[ChaosRedis] = field(default_factory=list)
    fleets: list[Fleet] = field(default_factory=list)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def redis(self, *flags: str) -> ChaosRedis:
        server = ChaosRedis(self.root / f"redis{len(self.redises)}", *flags)
        self.redises.append(server)
        return server

    def fleet(self, redis_url: str, **extra_env: str) -> Fleet:
        fleet = Fleet(redis_url, self.root / f"fleet{len(self.fleets)}", extra_env=extra_env)
        self.fleets.append(fleet)
        return fleet

    async def aclose(self) -> None:
        try:
            for hook in self.on_close:
                await hook()
        finally:
            for fleet in self.fleets:
                fleet.close()
            for server in self.redises:
                server.stop()
