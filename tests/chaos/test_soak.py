"""Soak (opt-in: ``pytest -m load tests/chaos/test_soak.py``): a mixed workload for
``LEASEHOLD_SOAK_SECS`` (default 120) while a timer injects every fault of this folder in turn,
then the ledger check."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal

import pytest

from tests.chaos.fleet import LEASE_TTL_SECS, Agent, Fleet, Lab
from tests.chaos.load import Producer, job_command
from tests.chaos.scenario import Scenario, start

SOAK_SECS = float(os.environ.get("LEASEHOLD_SOAK_SECS", "120"))
FAULT_EVERY_SECS = 4.0
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
pytestmark = [pytest.mark.load, pytest.mark.timeout(SOAK_SECS + 300)]


class Faults:
    """Each call injects the next fault and heals it, so the fleet is whole between faults."""

    def __init__(self, sc: Scenario, agents: list[Agent]) -> None:
        self.sc = sc
        self.fleet: Fleet = sc.fleet
        self.agents = agents
        self.injected: list[str] = []
        self._kinds = itertools.cycle(["kill_agent", "kill_api", "kill_reaper", "pause_agent",
                                       "restart_redis"])

    async def next(self) -> None:
        kind = next(self._kinds)
        self.injected.append(kind)
        fleet = self.fleet
        if kind == "kill_agent":
            victim = self.agents.pop(random.randrange(len(self.agents)))
            victim.kill()
            url = random.choice(self.sc.servers)
            self.agents.append(await fleet.agent(url, self.sc.queue, slots=3))
        elif kind == "kill_api":
            await fleet.restart_server(random.choice(self.sc.servers))
        elif kind == "kill_reaper":
            reapers = [p for p in fleet.procs if p.name.startswith("reaper") and p.alive()]
            reapers[0].kill()
            await asyncio.sleep(LEASE_TTL_SECS)
            fleet.reaper()
        elif kind == "pause_agent":
            paused = random.choice(self.agents).proc
            paused.signal(signal.SIGSTOP)
            await asyncio.sleep(LEASE_TTL_SECS * 2)
            paused.signal(signal.SIGCONT)
        else:
            self.sc.redis_server.kill()
            await asyncio.sleep(0.5)
            self.sc.redis_server.restart()


async def test_soak_mixed_workload_with_faults_on_a_timer(lab: Lab) -> None:
    sc = await start(lab, *AOF, servers=2, reapers=2)
    agents = [await sc.fleet.agent(url, sc.queue, slots=3) for url in sc.servers * 2]
    flaky = job_command(sc.executions, 0.05) + '; [ "$LEASEHOLD_ATTEMPT" -ge 1 ] || exit 3'
    mixes = [(job_command(sc.executions, 0.05), {}),  # short
             (job_command(sc.executions, 1.5), {}),  # long: lives through heartbeats
             (flaky, {}),  # fails once, then succeeds
             (job_command(sc.executions, 0.05), {"delay_secs": 0.5})]  # delayed
    producers = [Producer(sc.ledger, sc.servers, sc.fleet.admin_token, sc.queue, command,
                          spec=spec) for command, spec in mixes]
    faults = Faults(sc, agents)
    stop = asyncio.Event()

    async def produce(producer: Producer, pace: float) -> None:
        while not stop.is_set():
            await producer.submit()
            await asyncio.sleep(pace)

    async def inject() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FAULT_EVERY_SECS)
            if not stop.is_set():
                await faults.next()

    tasks = [asyncio.create_task(produce(p, pace))
             for p, pace in zip(producers, (0.02, 0.3, 0.1, 0.2), strict=True)]
    tasks.append(asyncio.create_task(inject()))
    try:
        await asyncio.sleep(SOAK_SECS)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for producer in producers:
            await producer.close()
    report = await sc.verdict(within=120)
    print(f"soak: {SOAK_SECS:.0f}s, faults {faults.injected}")
    assert report.counts["ok"] > 0
    assert set(faults.injected) >= {"kill_agent", "kill_api", "kill_reaper", "pause_agent",
                                    "restart_redis"} or SOAK_SECS < 5 * FAULT_EVERY_SECS
