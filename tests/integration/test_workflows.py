"""Workflow runs through ``Workflows`` and ``Scheduler``: roots, cascade, skips, cancel, re-runs."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from pydantic import JsonValue

from leasehold.scheduler import errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import Claim, JobStatus
from leasehold.scheduler.reaper import Reaper
from leasehold.scheduler.workflow_defs import parse
from leasehold.scheduler.workflows import Workflows

QUEUED, RUNNING, SUCCESS = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCESS
FAILURE, CANCELLED, SKIPPED = JobStatus.FAILURE, JobStatus.CANCELLED, JobStatus.SKIPPED


def node(node_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "command": f"echo {node_id}", "depends_on": list(deps), **extra}


async def create(scheduler: Scheduler, *nodes: dict[str, Any], queue: str = "default"
                 ) -> tuple[Workflows, str]:
    workflows = Workflows(scheduler)
    view = await workflows.create(parse({"name": "wf", "queue": queue, "jobs": list(nodes)}))
    return workflows, view.id


async def claim_all(scheduler: Scheduler, labels: list[str] | None = None,
                    queue: str = "default", **kw: Any) -> list[Claim]:
    batch = await scheduler.claim("w1", labels or [], queues=[queue], max_jobs=100, **kw)
    return batch.claims


def names(claims: list[Claim]) -> list[str]:
    return sorted(claim.job.job_id for claim in claims)


async def statuses(workflows: Workflows, workflow_id: str) -> dict[str, str]:
    view = await workflows.status(workflow_id)
    return {job.id: job.status for job in view.jobs}


async def drain(scheduler: Scheduler, labels: list[str] | None = None
                ) -> tuple[Counter[str], dict[str, dict[str, JsonValue]]]:
    """Claims and completes (outputs = {"by": name}) until nothing is left to claim.

    Returns how often each job name completed and the upstream outputs each one was given.
    """
    completed: Counter[str] = Counter()
    upstream: dict[str, dict[str, JsonValue]] = {}
    while claims := await claim_all(scheduler, labels):
        for claim in claims:
            name = claim.job.job_id
            upstream[name] = claim.job.upstream_outputs.value
            await scheduler.complete(claim.lease.lease_id, "w1", outputs={"by": name})
            completed[name] += 1
    return completed, upstream


# -- S1/S2: roots first, then the cascade ----------------------------------------------------------

async def test_only_roots_are_claimable_after_run(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c", "a"),
                                 node("r"))
    run = await workflows.run(wf)
    assert sorted(run.jobs) == ["a", "b", "c", "r"] and run.status == "running"
    claims = await claim_all(scheduler)
    assert names(claims) == ["a", "r"]
    assert all(claim.job.workflow_id == wf for claim in claims)
    assert all(claim.job.id == run.jobs[claim.job.job_id] for claim in claims)
    assert await claim_all(scheduler) == []
    assert await statuses(workflows, wf) == {"a": RUNNING, "b": QUEUED, "c": QUEUED,
                                             "r": RUNNING}
    stats = await scheduler.queue_stats("default")
    assert (stats.ready, stats.waiting_deps, stats.running) == (0, 2, 2)


async def test_completing_the_root_releases_both_dependants(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c", "a"))
    await workflows.run(wf)
    (claim,) = await claim_all(scheduler)
    await scheduler.complete(claim.lease.lease_id, outputs={"artifact": "a.tar"})
    released = await claim_all(scheduler)
    assert names(released) == ["b", "c"]
    for dependant in released:
        assert dependant.job.upstream_outputs == {"a": {"artifact": "a.tar"}}
    assert (await statuses(workflows, wf))["a"] == SUCCESS
    assert (await scheduler.queue_stats("default")).waiting_deps == 0


async def test_a_diamond_completes_through_the_cascade(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c", "a"),
                                 node("d", "b", "c"))
    run = await workflows.run(wf)
    completed, upstream = await drain(scheduler)
    assert completed == Counter({"a": 1, "b": 1, "c": 1, "d": 1})
    # only direct dependencies' outputs, keyed by their job names
    assert upstream == {"a": {}, "b": {"a": {"by": "a"}}, "c": {"a": {"by": "a"}},
                        "d": {"b": {"by": "b"}, "c": {"by": "c"}}}
    view = await workflows.status(wf)
    assert view.status == "success" and view.run_id == run.run_id
    assert {job.id: job.status for job in view.jobs} == dict.fromkeys("abcd", SUCCESS)
    assert {job.id: job.outputs for job in view.jobs} == {n: {"by": n} for n in "abcd"}
    (summary,) = await workflows.runs(wf)
    assert summary.status == "success" and summary.finished_at_ms is not None


def layered_dag(size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` nodes in layers; each non-root node depends on 1-3 nodes of earlier layers."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = []
    earlier: list[str] = []
    layer: list[str] = []
    for n in range(size):
        if layer and rng.random() < 0.15:
            earlier, layer = earlier + layer, []
        node_id = f"n{n:03d}"
        deps = rng.sample(earlier, k=min(len(earlier), rng.randint(1, 3))) if earlier else []
        nodes.append(node(node_id, *deps))
        layer.append(node_id)
    return nodes


async def test_a_100_node_dag_completes_each_job_exactly_once(scheduler: Scheduler) -> None:
    nodes = layered_dag(100, seed=3)
    deps = {n["id"]: n["depends_on"] for n in nodes}
    assert sum(1 for d in deps.values() if not d) < 100 and max(map(len, deps.values())) > 1
    workflows, wf = await create(scheduler, *nodes)
    await workflows.run(wf)
    finished_before: set[str] = set()
    completed: Counter[str] = Counter()
    waves = 0
    while claims := await claim_all(scheduler):
        waves += 1
        for claim in claims:
            name = claim.job.job_id
            assert set(deps[name]) <= finished_before, name  # claimable only after its deps
            assert claim.job.upstream_outputs == {d: {"by": d} for d in deps[name]}
        for claim in claims:
            await scheduler.complete(claim.lease.lease_id, outputs={"by": claim.job.job_id})
            completed[claim.job.job_id] += 1
        finished_before.update(claim.job.job_id for claim in claims)
    assert completed == Counter(dict.fromkeys(deps, 1))
    assert waves > 2
    view = await workflows.status(wf)
    assert view.status == "success" and all(job.status == SUCCESS for job in view.jobs)
    counters = await scheduler.counters("default")
    assert counters["finished:success"] == 100


# -- S3: failure skips the transitive closure ------------------------------------------------------

async def test_failure_skips_the_transitive_closure_only(scheduler: Scheduler) -> None:
    workflows, wf = await create(
        scheduler, node("a"), node("b", "a"), node("c", "b"), node("d", "a"),
        node("e"), node("f", "e"), node("g", "c", "f"))
    await workflows.run(wf)
    claims = {claim.job.job_id: claim for claim in await claim_all(scheduler)}
    assert sorted(claims) == ["a", "e"]
    outcome = await scheduler.fail(claims["a"].lease.lease_id, "exit 1", retryable=True)
    assert outcome.will_retry is False  # no retries in the budget
    state = await statuses(workflows, wf)
    assert state == {"a": FAILURE, "b": SKIPPED, "c": SKIPPED, "d": SKIPPED, "e": RUNNING,
                     "f": QUEUED, "g": SKIPPED}
    skipped = await scheduler.get((await workflows.runs(wf))[0].jobs["c"])
    assert skipped.error == "upstream job b ended skipped"
    assert (await workflows.status(wf)).status == "running"  # the unrelated branch goes on
    await scheduler.complete(claims["e"].lease.lease_id)
    completed, _ = await drain(scheduler)
    assert completed == Counter({"f": 1})
    assert (await statuses(workflows, wf))["f"] == SUCCESS
    view = await workflows.status(wf)
    assert view.status == "failure"
    assert (await scheduler.queue_stats("default")).waiting_deps == 0


async def test_a_retryable_failure_with_budget_left_does_not_skip(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a", max_retries=1), node("b", "a"))
    await workflows.run(wf)
    (claim,) = await claim_all(scheduler)
    assert (await scheduler.fail(claim.lease.lease_id, "flaky", retryable=True)).will_retry
    assert await statuses(workflows, wf) == {"a": QUEUED, "b": QUEUED}
    completed, upstream = await drain(scheduler)
    assert completed == Counter({"a": 1, "b": 1}) and upstream["b"] == {"a": {"by": "a"}}
    assert (await workflows.status(wf)).jobs[0].attempt == 1


async def test_operator_retry_of_a_workflow_job_is_refused(scheduler: Scheduler) -> None:
    """Retrying one job would end its run early (its run counted it) and could not revive the
    dependants already skipped; a fresh run is the way to go again."""
    workflows, wf = await create(scheduler, node("a"), node("b"), node("c", "a"))
    await workflows.run(wf)
    claims = {c.job.job_id: c for c in await claim_all(scheduler)}
    await scheduler.fail(claims["a"].lease.lease_id, "exit 1")
    with pytest.raises(errors.InvalidState, match="running its workflow again"):
        await scheduler.retry(claims["a"].job.id)
    assert (await scheduler.get(claims["a"].job.id)).status == FAILURE
    assert (await workflows.status(wf)).status == "running"  # b still runs
    with pytest.raises(errors.Conflict):
        await workflows.run(wf)
    await scheduler.complete(claims["b"].lease.lease_id)
    assert (await workflows.status(wf)).status == "failure"
    await workflows.run(wf)


# -- S4: cancel ------------------------------------------------------------------------------------

async def test_cancel_with_a_running_job(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c"), node("d"))
    await workflows.run(wf)
    claims = {claim.job.job_id: claim for claim in
              (await scheduler.claim("w1", [], max_jobs=1)).claims}
    assert list(claims) == ["a"]
    lease = claims["a"].lease
    assert await workflows.cancel(wf) == 4
    beat = await scheduler.heartbeat(lease.lease_id, "w1")
    assert beat.cancelled is True
    with pytest.raises(errors.JobCancelled):
        await scheduler.complete(lease.lease_id, "w1", outputs={"late": True})
    assert await statuses(workflows, wf) == dict.fromkeys("abcd", CANCELLED)
    assert await claim_all(scheduler) == []
    view = await workflows.status(wf)
    assert view.status == "cancelled"
    (run,) = await workflows.runs(wf)
    assert run.status == "cancelled" and run.finished_at_ms is not None
    stats = await scheduler.queue_stats("default")
    assert (stats.ready, stats.running, stats.waiting_deps) == (0, 0, 0)
    assert await workflows.cancel(wf) == 0  # nothing active any more


async def test_cancel_after_some_jobs_finished_keeps_their_results(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c", "b"))
    await workflows.run(wf)
    (claim,) = await claim_all(scheduler)
    await scheduler.complete(claim.lease.lease_id)
    assert await workflows.cancel(wf) == 2
    assert await statuses(workflows, wf) == {"a": SUCCESS, "b": CANCELLED, "c": CANCELLED}
    assert (await workflows.status(wf)).status == "cancelled"


# -- lease expiry (seed 003 defect 1: the job must not stay queued forever) ------------------------

async def test_lease_expiry_without_retries_fails_the_job_and_skips_dependants(
        scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), node("c", "b"))
    await workflows.run(wf)
    (claim,) = (await scheduler.claim("w1", [], lease_ttl_secs=1)).claims
    report = await Reaper(scheduler).run_once(now_ms=await scheduler.now_ms() + 60_000)
    assert report.expired == 1
    job = await scheduler.get(claim.job.id)
    assert (job.status, job.error) == (FAILURE, "lease_expired")
    assert await statuses(workflows, wf) == {"a": FAILURE, "b": SKIPPED, "c": SKIPPED}
    assert (await workflows.status(wf)).status == "failure"
    with pytest.raises(errors.LeaseExpired):
        await scheduler.complete(claim.lease.lease_id)
    assert await claim_all(scheduler) == []
    await workflows.run(wf)  # the run ended, so a new one may start


async def test_lease_expiry_with_a_retry_left_requeues_and_dependants_wait(
        scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a", max_retries=1), node("b", "a"))
    await workflows.run(wf)
    assert len((await scheduler.claim("w1", [], lease_ttl_secs=1)).claims) == 1
    later = await scheduler.now_ms() + 60_000
    assert (await Reaper(scheduler).run_once(now_ms=later)).expired == 1
    assert await statuses(workflows, wf) == {"a": QUEUED, "b": QUEUED}
    (again,) = await claim_all(scheduler, now_ms=later + 1)
    assert (again.job.job_id, again.job.attempt) == ("a", 1)
    await scheduler.complete(again.lease.lease_id, now_ms=later + 2)
    (dependant,) = await claim_all(scheduler, now_ms=later + 3)
    assert dependant.job.job_id == "b"


# -- runs: one at a time, fresh jobs each time, history -------------------------------------------

async def test_a_second_run_while_one_is_active_is_a_conflict(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"))
    first = await workflows.run(wf)
    with pytest.raises(errors.Conflict):
        await workflows.run(wf)
    assert [run.run_id for run in await workflows.runs(wf)] == [first.run_id]
    assert len(await claim_all(scheduler)) == 1  # the refused run enqueued nothing


async def test_rerun_after_cancel_gets_fresh_jobs(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"))
    first = await workflows.run(wf)
    (old,) = await claim_all(scheduler)
    await workflows.cancel(wf)
    second = await workflows.run(wf)
    assert second.run_id != first.run_id
    assert set(second.jobs.values()).isdisjoint(first.jobs.values())
    # seed 003's /cancelled check looks at the newest run: not cancelled
    assert await workflows.job_of(wf, "a") == second.jobs["a"]
    assert (await scheduler.get(second.jobs["a"])).status == QUEUED
    (new,) = await claim_all(scheduler)
    assert new.job.id == second.jobs["a"] and new.job.attempt == 0
    assert (await scheduler.heartbeat(new.lease.lease_id, "w1")).cancelled is False
    with pytest.raises(errors.JobCancelled):  # the old run's worker is still told no
        await scheduler.complete(old.lease.lease_id, "w1")
    await scheduler.complete(new.lease.lease_id, "w1", outputs={"n": 2})
    completed, upstream = await drain(scheduler)
    assert completed == Counter({"b": 1}) and upstream["b"] == {"a": {"n": 2}}
    view = await workflows.status(wf)
    assert view.run_id == second.run_id and view.status == "success"
    assert (await scheduler.get(first.jobs["b"])).status == CANCELLED


async def test_runs_started_in_one_millisecond_keep_their_order(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newest run is the current one even when every run starts at the same time."""
    enqueue = scheduler.scripts.enqueue

    async def at_one_instant(q: Any, jobs: Any, now_ms: Any, *rest: Any) -> Any:
        return await enqueue(q, jobs, 1_700_000_000_000, *rest)

    monkeypatch.setattr(scheduler.scripts, "enqueue", at_one_instant)
    workflows, wf = await create(scheduler, node("a"))
    started = []
    for _ in range(8):
        run = await workflows.run(wf)
        started.append(run.run_id)
        assert await workflows.job_of(wf, "a") == run.jobs["a"]
        await workflows.cancel(wf)
    assert [r.run_id for r in await workflows.runs(wf)] == started[::-1]


async def test_run_history_is_newest_first_with_statuses(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"))
    cancelled = await workflows.run(wf)
    await workflows.cancel(wf)
    succeeded = await workflows.run(wf)
    await drain(scheduler)
    running = await workflows.run(wf)
    history = await workflows.runs(wf)
    assert [(r.run_id, r.status) for r in history] == [
        (running.run_id, "running"), (succeeded.run_id, "success"),
        (cancelled.run_id, "cancelled")]
    assert history[0].finished_at_ms is None
    assert all(r.finished_at_ms is not None for r in history[1:])
    assert [r.run_id for r in await workflows.runs(wf, limit=2)] == [
        running.run_id, succeeded.run_id]


# -- dependants keep their own labels, priority and retry policy (seed 003 defect 2) ---------------

async def test_dependants_keep_labels_priority_and_retry_policy(scheduler: Scheduler) -> None:
    workflows, wf = await create(
        scheduler, node("a"),
        node("deploy", "a", required_labels=["deploy"], retry_policy={
            "max_retries": 1, "backoff": {"Fixed": {"delay_secs": 5}}}),
        node("late", "a", priority=500), node("early", "a", priority=1),
        node("after-deploy", "deploy"))
    await workflows.run(wf)
    (root,) = await claim_all(scheduler)
    await scheduler.complete(root.lease.lease_id)
    plain = (await scheduler.claim("w1", [], max_jobs=100)).claims
    assert [c.job.job_id for c in plain] == ["early", "late"]  # by priority; no deploy
    assert [c.job.priority for c in plain] == [1, 500]
    (deploy,) = await claim_all(scheduler, ["deploy", "linux"])
    assert deploy.job.required_labels == ["deploy"]
    assert deploy.job.retry_policy.max_retries == 1
    before = await scheduler.now_ms()
    outcome = await scheduler.fail(deploy.lease.lease_id, "network", retryable=True)
    after = await scheduler.now_ms()
    assert outcome.will_retry and outcome.retry_at_ms is not None
    assert before + 5000 <= outcome.retry_at_ms <= after + 5000
    assert await claim_all(scheduler, ["deploy"]) == []  # still backing off
    (retried,) = await claim_all(scheduler, ["deploy"], now_ms=outcome.retry_at_ms)
    assert (retried.job.job_id, retried.job.attempt) == ("deploy", 1)
    failed = await scheduler.fail(retried.lease.lease_id, "network", retryable=True,
                                  now_ms=outcome.retry_at_ms + 1)
    assert failed.will_retry is False
    state = await statuses(workflows, wf)
    assert (state["deploy"], state["after-deploy"]) == (FAILURE, SKIPPED)


# -- the seed 003 sample (I1-I3) -------------------------------------------------------------------

async def test_i1_sample_runs_to_success_with_one_worker(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    await workflows.create_sample()
    await workflows.run("ci-1")
    completed: Counter[str] = Counter()
    while (batch := await scheduler.claim("w1", ["deploy"])).claims:
        (claim,) = batch.claims
        outputs: dict[str, JsonValue] = (
            {"artifact": "build.tar.gz"} if claim.job.job_id == "build" else {})
        if claim.job.job_id in ("deploy-db", "deploy-web"):
            assert claim.job.upstream_outputs["build"] == {"artifact": "build.tar.gz"}
        await scheduler.complete(claim.lease.lease_id, "w1", outputs=outputs)
        completed[claim.job.job_id] += 1
    assert sum(completed.values()) == 8 and set(completed.values()) == {1}
    view = await workflows.status("ci-1")
    assert view.status == "success" and all(job.status == SUCCESS for job in view.jobs)


async def test_i2_a_failed_root_skips_its_closure_in_the_sample(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    await workflows.create_sample()
    await workflows.run("ci-1")
    roots = {c.job.job_id: c for c in await claim_all(scheduler, ["deploy"])}
    assert sorted(roots) == ["lint", "typecheck", "unit-tests"]
    await scheduler.fail(roots["unit-tests"].lease.lease_id, "exit 1", retryable=False)
    for name in ("lint", "typecheck"):
        await scheduler.complete(roots[name].lease.lease_id)
    await drain(scheduler, ["deploy"])
    assert await statuses(workflows, "ci-1") == {
        "lint": SUCCESS, "unit-tests": FAILURE, "typecheck": SUCCESS, "build": SKIPPED,
        "docs": SUCCESS, "deploy-db": SKIPPED, "deploy-web": SKIPPED, "audit": SUCCESS}
    assert (await workflows.status("ci-1")).status == "failure"


async def test_i3_cancel_after_one_claim_cancels_the_sample(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    await workflows.create_sample()
    await workflows.run("ci-1")
    (claim,) = (await scheduler.claim("w1", [])).claims
    assert await workflows.cancel("ci-1") == 8
    assert set((await statuses(workflows, "ci-1")).values()) == {CANCELLED}
    assert (await scheduler.heartbeat(claim.lease.lease_id)).cancelled


# -- definitions -----------------------------------------------------------------------------------

async def test_unknown_workflows_are_not_found(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    for call in (workflows.run, workflows.cancel, workflows.status, workflows.runs):
        with pytest.raises(errors.WorkflowNotFound):
            await call("nope")
    with pytest.raises(errors.NotFound):
        await workflows.job_of("nope", "a")


async def test_an_empty_workflow_cannot_run(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    view = await workflows.create(parse({"name": "empty", "jobs": {}}))
    assert view.jobs == [] and view.status == "idle"
    with pytest.raises(errors.Conflict):
        await workflows.run(view.id)


async def test_a_workflow_lives_in_its_own_queue(scheduler: Scheduler) -> None:
    workflows, wf = await create(scheduler, node("a"), node("b", "a"), queue="builds")
    await workflows.run(wf)
    assert await claim_all(scheduler) == []  # not in "default"
    (claim,) = await claim_all(scheduler, queue="builds")
    assert claim.job.queue == "builds"
    await scheduler.complete(claim.lease.lease_id)
    (dependant,) = await claim_all(scheduler, queue="builds")
    assert dependant.job.job_id == "b"


async def test_list_is_in_creation_order_with_a_status_filter(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    ids = [(await workflows.create(parse({"name": f"w{n}", "jobs": [node("a")]}))).id
           for n in range(6)]
    assert [v.id for v in await workflows.list(100, 0, None)] == ids
    assert [v.id for v in await workflows.list(2, 1, None)] == ids[1:3]
    assert await workflows.list(10, 6, None) == []
    for n in (1, 3, 4):
        await workflows.run(ids[n])
    await claim_all(scheduler)
    running = [ids[1], ids[3], ids[4]]
    assert [v.id for v in await workflows.list(100, 0, "running")] == running
    assert await workflows.list(100, 0, "success") == []
    # with a filter, offset counts matching workflows: page 2 of "running", one per page
    pages = [[v.id for v in await workflows.list(1, n, "running")] for n in range(4)]
    assert pages == [[running[0]], [running[1]], [running[2]], []]
    assert [v.id for v in await workflows.list(2, 1, "running")] == running[1:]
    # seed 003 shows a never-run workflow's jobs as queued
    assert [v.id for v in await workflows.list(100, 0, "queued")] == [
        ids[n] for n in (0, 2, 5)]
    replaced = await workflows.create(parse({"name": "again", "jobs": [node("z")]}), ids[0])
    assert replaced.name == "again"
    assert [v.id for v in await workflows.list(100, 0, None)] == ids  # same place
