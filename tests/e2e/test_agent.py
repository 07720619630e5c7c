"""The agent end to end: real redis-server, ``leasehold serve``, ``leasehold reaper`` and agents."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from leasehold.api.fleet.client import LeaseholdClient, LeaseLost
from leasehold.scheduler.logs import LogChunk
from leasehold.scheduler.models import JobSpec, JobStatus
from leasehold.scheduler.rawjson import decoded
from tests.e2e.conftest import (
    AgentFactory,
    AgentProcess,
    Service,
    wait_async,
    wait_status,
    wait_terminal,
    wait_until,
)
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(90)


def spec(queue: str, command: str, **fields: object) -> JobSpec:
    return JobSpec.model_validate({"queue": queue, "command": command, **fields})


async def read_logs(api: LeaseholdClient, job_id: str) -> list[LogChunk]:
    """Every stored chunk of a job, in stream order, page by page."""
    chunks: list[LogChunk] = []
    after: str | None = None
    while True:
        params = {"limit": "1000", **({"after": after} if after else {})}
        page = [LogChunk.model_validate(c)
                for c in await api.request("GET", f"/api/jobs/{job_id}/logs", params=params)]
        chunks.extend(page)
        if len(page) < 1000:
            return chunks
        after = page[-1].id


def pid_state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), or None when it is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0]


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def counters(api: LeaseholdClient, queue: str) -> dict[str, int]:
    stats = await api.request("GET", f"/api/queues/{queue}")
    found: dict[str, int] = stats["counters"]
    return found


# -- running jobs ------------------------------------------------------------------------------


async def test_jobs_complete_with_outputs_and_environment(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    await agents.start(queue, slots=2)
    as_json = await client.submit(spec(
        queue, 'printf \'{"job": "%s", "attempt": %s, "n": [1, 2]}\' '
        '"$LEASEHOLD_JOB_ID" "$LEASEHOLD_ATTEMPT" > "$LEASEHOLD_OUTPUTS"'))
    as_lines = await client.submit(spec(
        queue, 'printf "color=blue\\n size = 3 \\nnot a pair\\n" > "$LEASEHOLD_OUTPUTS"'))
    silent = await client.submit(spec(queue, "true"))

    job = await wait_terminal(client, as_json.id)
    assert job.status == JobStatus.SUCCESS, job.error
    assert decoded(job.outputs) == {"job": as_json.id, "attempt": 0, "n": [1, 2]}
    job = await wait_terminal(client, as_lines.id)
    assert (job.status, decoded(job.outputs)) == (JobStatus.SUCCESS, {"color": "blue", "size": "3"})
    job = await wait_terminal(client, silent.id)
    assert (job.status, decoded(job.outputs), job.attempt) == (JobStatus.SUCCESS, {}, 0)


async def test_logs_arrive_in_order(client: LeaseholdClient, agents: AgentFactory,
                                    queue: str) -> None:
    await agents.start(queue, slots=8)
    # bursts over ~0.5 s, so lines ship both while the jobs run and as they end; several jobs
    # at once so that the periodic shipper and each job's final flush overlap
    command = ('i=0; while [ $i -lt 10 ]; do seq $((i * 200 + 1)) $((i * 200 + 200)); '
               'echo "err-$i" >&2; i=$((i + 1)); sleep 0.05; done; echo last')
    submitted = [await client.submit(spec(queue, command)) for _ in range(8)]
    for item in submitted:
        job = await wait_terminal(client, item.id, within=30)
        assert job.status == JobStatus.SUCCESS, job.error

        chunks = await read_logs(client, item.id)
        stdout = [c.data for c in chunks if c.stream == "stdout"]
        stderr = [c.data for c in chunks if c.stream == "stderr"]
        assert stdout == [f"{n}\n" for n in range(1, 2001)] + ["last\n"], item.id  # bytes kept
        assert stderr == [f"err-{i}\n" for i in range(10)], item.id
        sequences = [c.sequence for c in chunks]
        assert sequences == list(range(len(chunks)))  # one lease, every line once, in order
        assert {c.attempt for c in chunks} == {0}


async def test_failing_command_retries_with_backoff_then_fails(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    await agents.start(queue)
    policy = {"max_retries": 2, "backoff": {"Fixed": {"delay_secs": 0.6}}}
    started = time.monotonic()
    submitted = await client.submit(spec(
        queue, 'echo "attempt $LEASEHOLD_ATTEMPT"; echo boom >&2; exit 3', retry_policy=policy))
    job = await wait_terminal(client, submitted.id, within=20)
    elapsed = time.monotonic() - started

    assert job.status == JobStatus.FAILURE
    assert job.attempt == 2
    assert job.error is not None and job.error.startswith("exit code 3")
    assert "[stderr] boom" in job.error
    assert elapsed >= 1.2  # two waits of the fixed 0.6 s backoff
    stdout = [_line(c.data) for c in await read_logs(client, submitted.id) if c.stream == "stdout"]
    assert stdout == ["attempt 0", "attempt 1", "attempt 2"]
    found = await counters(client, queue)
    assert (found.get("claimed"), found.get("retried"), found.get("finished:failure")) == (3, 2, 1)


async def test_non_retryable_exit_code_fails_at_once(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    await agents.start(queue, extra=("--non-retryable-exit-code", "7",
                                     "--non-retryable-exit-code", "9"))
    policy = {"max_retries": 5}
    fatal = await client.submit(spec(queue, "exit 7", retry_policy=policy))
    job = await wait_terminal(client, fatal.id)
    assert (job.status, job.attempt) == (JobStatus.FAILURE, 0)
    assert job.error is not None and job.error.startswith("exit code 7")

    # other codes still retry
    flaky = await client.submit(spec(
        queue, '[ "$LEASEHOLD_ATTEMPT" -ge 1 ] || exit 4', retry_policy=policy))
    job = await wait_terminal(client, flaky.id)
    assert (job.status, job.attempt) == (JobStatus.SUCCESS, 1)
    assert (await counters(client, queue)).get("retried") == 1


async def test_cancel_kills_the_process_tree(
        client: LeaseholdClient, agents: AgentFactory, queue: str, tmp_path: Path) -> None:
    agent = await agents.start(queue, lease_ttl=1.5)
    pid_file = tmp_path / "grandchild.pid"
    submitted = await client.submit(spec(
        queue, f"sh -c 'sleep 300 & echo $! > {pid_file}; wait'; echo never"))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 10,
                     "the job to start its grandchild")
    pid = int(pid_file.read_text())
    try:
        assert pid_state(pid) not in (None, "Z")
        await client.cancel(submitted.id)
        await wait_until(lambda: pid_state(pid) in (None, "Z"), 5,
                         "the cancelled job's grandchild to die")
        job = await client.get_job(submitted.id)
        assert job.status == JobStatus.CANCELLED
        stdout = [_line(c.data) for c in await read_logs(client, submitted.id)]
        assert "never" not in stdout
        # the agent is still healthy and takes the next job
        after = await client.submit(spec(queue, "echo next"))
        assert (await wait_terminal(client, after.id)).status == JobStatus.SUCCESS
        assert agent.proc.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- agent failure and shutdown ----------------------------------------------------------------


async def test_killed_agent_job_reruns_elsewhere_and_late_calls_are_refused(
        client: LeaseholdClient, agents: AgentFactory, service: Service, queue: str,
        tmp_path: Path) -> None:
    first = await agents.start(queue, lease_ttl=2)
    pid_file = tmp_path / "job.pid"
    submitted = await client.submit(spec(
        queue, f'[ "$LEASEHOLD_ATTEMPT" = 0 ] && echo $$ > {pid_file}; '
        'sleep 2.5; echo "done on attempt $LEASEHOLD_ATTEMPT"',
        retry_policy={"max_retries": 1}))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 10,
                     "the job to start on the first agent")
    started = first.events("job_started")
    assert [e["job_id"] for e in started] == [submitted.id]
    lost_lease = str(started[0]["lease_id"])
    lost_worker = first.worker()

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    # the job's shell ran in its own session and outlives the agent: end it like a dead host
    kill_group(int(pid_file.read_text()))
    killed_at = time.monotonic()

    second = await agents.start(queue, lease_ttl=2)
    job = await wait_terminal(client, submitted.id, within=20)
    assert job.status == JobStatus.SUCCESS, job.error
    assert job.attempt == 1
    assert job.worker_id == second.worker()["worker_id"] != lost_worker["worker_id"]
    assert time.monotonic() - killed_at >= 2.5  # the re-run itself takes 2.5 s
    stdout = [_line(c.data) for c in await read_logs(client, submitted.id) if c.stream == "stdout"]
    assert stdout == ["done on attempt 1"]
    found = await counters(client, queue)
    assert (found.get("leases_expired"), found.get("finished:success")) == (1, 1)

    # the dead agent's late calls are fenced off
    async with service.client(lost_worker["token"]) as late:
        for path, body in [("heartbeat", {}), ("complete", {"outputs": {}}),
                           ("fail", {"error": "late"}),
                           ("logs", {"chunks": [{"data": "late", "sequence": 99}]})]:
            with pytest.raises(LeaseLost) as refused:
                await late.request("POST", f"/api/jobs/{lost_lease}/{path}", body)
            assert refused.value.status == 409, path
            assert refused.value.code == "lease_superseded", path
    job = await client.get_job(submitted.id)
    assert (job.status, job.attempt) == (JobStatus.SUCCESS, 1)
    assert "late" not in [_line(c.data) for c in await read_logs(client, submitted.id)]


async def test_sigterm_drains_without_losing_jobs(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    agent = await agents.start(queue, slots=1, lease_ttl=2)
    running = await client.submit(spec(queue, "sleep 2; echo finished"))
    await wait_status(client, running.id, JobStatus.RUNNING)
    queued = [await client.submit(spec(queue, f"echo queued-{i}")) for i in range(3)]
    await asyncio.sleep(0.2)

    agent.proc.send_signal(signal.SIGTERM)
    code = await agent.wait_exit(10)
    assert code == 0, agent.stderr()[-2000:]
    job = await client.get_job(running.id)
    assert (job.status, job.attempt) == (JobStatus.SUCCESS, 0)
    assert [_line(c.data) for c in await read_logs(client, running.id)] == ["finished"]
    for item in queued:
        job = await client.get_job(item.id)
        assert (job.status, job.attempt, job.worker_id) == (JobStatus.QUEUED, 0, None)
    assert agent.events("agent_stopped")

    # nothing was lost: another agent runs the rest
    await agents.start(queue, slots=3)
    for item in queued:
        assert (await wait_terminal(client, item.id)).status == JobStatus.SUCCESS
    found = await counters(client, queue)
    assert (found.get("claimed"), found.get("finished:success")) == (4, 4)
    assert found.get("leases_expired", 0) == 0


async def test_sigterm_past_the_drain_timeout_hands_the_job_back(
        client: LeaseholdClient, agents: AgentFactory, queue: str, tmp_path: Path) -> None:
    agent = await agents.start(queue, lease_ttl=2, extra=("--drain-timeout", "0.5"))
    marker, pid_file = tmp_path / "ran-once", tmp_path / "job.pid"
    submitted = await client.submit(spec(
        queue, f"if [ -e {marker} ]; then echo second run; exit 0; fi; "
        f"touch {marker}; echo $$ > {pid_file}; sleep 60"))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 10,
                     "the job to start")
    pgid = int(pid_file.read_text())
    try:
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait_exit(10) == 0, agent.stderr()[-2000:]
        assert pid_state(pgid) in (None, "Z")  # the job was stopped, not left running
        job = await client.get_job(submitted.id)
        assert (job.status, job.attempt) == (JobStatus.QUEUED, 0)  # released: no attempt used
        assert [e["job_id"] for e in agent.events("job_released")] == [submitted.id]

        await agents.start(queue)
        job = await wait_terminal(client, submitted.id)
        assert (job.status, job.attempt) == (JobStatus.SUCCESS, 0)
        assert "second run" in [_line(c.data) for c in await read_logs(client, submitted.id)]
    finally:
        kill_group(pgid)


async def test_server_drain_stops_claiming_and_exits_after_running_jobs(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    agent = await agents.start(queue, slots=1, lease_ttl=2)
    worker_id = agent.worker()["worker_id"]
    running = await client.submit(spec(queue, "sleep 1.5; echo finished"))
    await wait_status(client, running.id, JobStatus.RUNNING)

    drained = await client.request("POST", f"/api/workers/{worker_id}/drain")
    assert drained["status"] == "draining"
    waiting = await client.submit(spec(queue, "echo after-drain"))

    code = await agent.wait_exit(8)
    assert code == 0, agent.stderr()[-2000:]
    assert (await client.get_job(running.id)).status == JobStatus.SUCCESS
    job = await client.get_job(waiting.id)
    assert (job.status, job.worker_id) == (JobStatus.QUEUED, None)
    assert [e["job_id"] for e in agent.events("job_started")] == [running.id]


# -- identity and errors -----------------------------------------------------------------------


async def test_worker_token_is_kept_in_state_dir_and_reused(
        client: LeaseholdClient, agents: AgentFactory, queue: str, tmp_path: Path) -> None:
    token = await agents.registration_token(uses=1)
    state_dir = tmp_path / "state"
    agent = await agents.start(queue, token=token, state_dir=state_dir)
    saved = state_dir / "worker.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    identity = agent.worker()
    assert identity["token"].startswith("lhw_") and identity["token"] != token
    # stop it while it runs a job (an idle agent first lets its long-poll claim return)
    busy = await client.submit(spec(queue, "sleep 0.3"))
    await wait_status(client, busy.id, JobStatus.RUNNING)
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.wait_exit(10) == 0

    # the registration token is used up; the stored worker token carries the restart
    again = await agents.start(queue, token=token, state_dir=state_dir)
    assert again.worker() == identity
    assert not again.events("agent_registered")
    submitted = await client.submit(spec(queue, "echo hi"))
    job = await wait_terminal(client, submitted.id)
    assert (job.status, job.worker_id) == (JobStatus.SUCCESS, identity["worker_id"])
    names = [w["name"] for w in await client.request("GET", "/api/workers")]
    assert names.count(f"{queue}-agent0") == 1

    # a worker token given directly needs no state dir
    again.proc.send_signal(signal.SIGKILL)
    assert await again.wait_exit(5) == -signal.SIGKILL
    direct = await agents.start(queue, token=identity["token"], state_dir=tmp_path / "direct")
    submitted = await client.submit(spec(queue, "echo direct"))
    job = await wait_terminal(client, submitted.id)
    assert (job.status, job.worker_id) == (JobStatus.SUCCESS, identity["worker_id"]), job.error
    assert direct.events("agent_started")[0]["worker_id"] == identity["worker_id"]

    # a fresh state dir with the spent registration token is refused
    refused = await agents.start(queue, token=token, state_dir=tmp_path / "other",
                                 wait_registered=False)
    assert await refused.wait_exit(15) == 3
    assert "refused the token" in refused.stderr()


async def test_rejected_token_is_a_clear_error(agents: AgentFactory, queue: str) -> None:
    agent = await agents.start(queue, token="lhr_not-a-real-token", wait_registered=False)
    assert await agent.wait_exit(15) == 3
    err = agent.stderr()
    assert "leasehold agent: the server refused the token" in err
    assert "Traceback" not in err
    assert "Unclosed" not in err


async def test_unreachable_server_is_a_clear_error(agents: AgentFactory, queue: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    agent = await agents.start(queue, token="lhr_whatever", server=nowhere,
                               wait_registered=False)
    assert await agent.wait_exit(30) == 1
    err = agent.stderr()
    assert err.startswith("leasehold agent:"), err
    assert nowhere in err and "the server is unavailable" in err
    assert "Traceback" not in err
    assert "Unclosed" not in err


# -- scale -------------------------------------------------------------------------------------


async def test_four_agents_run_a_thousand_jobs_exactly_once(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    fleet: list[AgentProcess] = []
    for _ in range(4):
        fleet.append(await agents.start(queue, slots=4, lease_ttl=10, wait_registered=False))
    await wait_until(lambda: all(a.events("agent_started") or a.proc.poll() is not None
                                 for a in fleet), 15, "four agents to start")
    assert all(a.proc.poll() is None for a in fleet)

    started = time.monotonic()
    reply = await client.submit_bulk([spec(queue, 'echo "$LEASEHOLD_JOB_ID"')
                                      for _ in range(1000)])
    ids = {job.id for job in reply.jobs}
    assert len(ids) == 1000

    async def all_done() -> bool:
        found = await counters(client, queue)
        return sum(v for k, v in found.items() if k.startswith("finished:")) >= 1000

    await wait_async(all_done, 120, "1000 jobs to finish", interval=0.25)
    elapsed = time.monotonic() - started

    found = await counters(client, queue)
    assert found.get("submitted") == 1000
    assert found.get("claimed") == 1000, found
    assert found.get("finished:success") == 1000, found
    assert found.get("retried", 0) == found.get("leases_expired", 0) == 0, found
    stats = await client.request("GET", f"/api/queues/{queue}")
    assert (stats["ready"], stats["running"], stats["success"]) == (0, 0, 1000)

    seen: dict[str, int] = {}
    cursor: str | None = None
    while True:
        page = await client.list_jobs(queue, limit=1000, cursor=cursor)
        for job in page.jobs:
            assert (job.status, job.attempt) == (JobStatus.SUCCESS, 0), job
            seen[job.id] = seen.get(job.id, 0) + 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert set(seen) == ids and set(seen.values()) == {1}

    completions = [e["job_id"] for a in fleet for e in a.events("job_completed")]
    assert sorted(completions) == sorted(ids)  # each job ran and was reported exactly once
    assert sum(1 for a in fleet if a.events("job_completed")) >= 2  # the work was shared

    sample = sorted(ids)[:5]
    for job_id in sample:
        assert [_line(c.data) for c in await read_logs(client, job_id)] == [job_id]
    print(f"1000 jobs on 4 agents x 4 slots in {elapsed:.1f}s")


def _line(data: str) -> str:
    """A pushed chunk's text without the newline the agent keeps."""
    return data.removesuffix("\n")
