"""A real ``leasehold agent`` runs a workflow's levels back to back: a dependant starts well
within a second of its dependency's completion (claims waiting on the queue are woken)."""

from __future__ import annotations

from leasehold.api.fleet.client import LeaseholdClient
from leasehold.scheduler.models import JobStatus
from tests.e2e.conftest import AgentFactory, wait_terminal


async def test_a_two_level_dag_runs_without_waiting_out_the_long_poll(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    await agents.start(queue, slots=1)
    definition = {"name": "levels", "trigger": "push", "queue": queue, "jobs": [
        {"id": "a", "command": "echo a"},
        {"id": "b", "command": "echo b", "depends_on": ["a"]},
        {"id": "c", "command": "echo c", "depends_on": ["b"]},
    ]}
    workflow = await client.request("POST", "/api/workflows", definition)
    run = await client.request("POST", f"/api/workflows/{workflow['id']}/run")
    jobs = {name: await wait_terminal(client, job_id, within=30)
            for name, job_id in run["jobs"].items()}
    assert {job.status for job in jobs.values()} == {JobStatus.SUCCESS}
    for upstream, downstream in (("a", "b"), ("b", "c")):
        finished, started = jobs[upstream].finished_at_ms, jobs[downstream].started_at_ms
        assert finished is not None and started is not None
        gap = started - finished
        print(f"{upstream} -> {downstream}: {gap} ms")
        assert 0 <= gap < 1000, f"{downstream} started {gap} ms after {upstream} completed"
