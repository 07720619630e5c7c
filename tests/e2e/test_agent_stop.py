"""An idle ``leasehold agent`` waiting in a long-poll claim stops at once on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.e2e.conftest import AgentFactory


async def test_sigterm_ends_the_agents_waiting_claim_at_once(
        agents: AgentFactory, queue: str) -> None:
    agent = await agents.start(queue, slots=2)
    await asyncio.sleep(1.0)  # inside its long-poll claim (10 s) on an empty queue
    assert agent.proc.poll() is None
    sent = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    code = await agent.wait_exit(within=5)
    took = time.monotonic() - sent
    assert code == 0, agent.stderr()[-2000:]
    assert took < 1.5, took
    assert agent.events("agent_stopped")
    print(f"\nagent SIGTERM to exit while waiting: {took * 1000:.0f} ms")
