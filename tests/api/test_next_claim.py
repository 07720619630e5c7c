"""One request per job: complete, fail and release with ``next`` finish the lease and claim the
worker's next job in the same request, with the same checks as a claim."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from leasehold.api.fleet.agent import Agent, AgentConfig
from leasehold.api.fleet.client import LeaseholdClient
from leasehold.api.server.appkeys import SERVICES
from tests.api.harness import Api


async def _claimed(worker: Api, queue: str) -> dict[str, Any]:
    claim = await worker.claim(queues=[queue])
    assert claim is not None
    return claim  # type: ignore[no-any-return]


async def test_complete_with_next_finishes_the_job_and_leases_the_next(api: Api) -> None:
    worker = await api.register("w-next")
    first = await api.submit(command="a", queue="nx1")
    second = await api.submit(command="b", queue="nx1")
    claim = await _claimed(worker, "nx1")
    assert claim["job"]["id"] == first["id"]

    reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {"outputs": {"n": 1}, "next": {}})
    assert reply.status == 200, reply.text
    assert reply.body["ok"] is True
    nxt = reply.body["next"]
    assert nxt["job"]["id"] == second["id"] and nxt["lease"]["worker_id"] == "w-next"
    assert (await api.job(first["id"]))["status"] == "success"
    assert (await api.job(second["id"]))["status"] == "running"

    last = await worker.post(f"/api/jobs/{nxt['lease']['lease_id']}/complete", {"next": {}})
    assert last.body == {"ok": True, "next": None}
    # without next, the reply is unchanged
    third = await api.submit(command="c", queue="nx1")
    claim = await _claimed(worker, "nx1")
    assert claim["job"]["id"] == third["id"]
    plain = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete", {})
    assert plain.body == {"ok": True}


async def test_next_with_max_jobs_answers_claims(api: Api) -> None:
    worker = await api.register("w-many")
    jobs = [await api.submit(command=str(i), queue="nx2") for i in range(4)]
    claim = await _claimed(worker, "nx2")
    reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {"next": {"max_jobs": 5}})
    assert reply.status == 200, reply.text
    assert [c["job"]["id"] for c in reply.body["next"]["claims"]] == [j["id"] for j in jobs[1:]]


async def test_next_in_another_queue_and_after_fail_and_release(api: Api) -> None:
    worker = await api.register("w-other")
    one = await api.submit(command="a", queue="nx3")
    two = await api.submit(command="b", queue="nx3b")
    three = await api.submit(command="c", queue="nx3b")
    claim = await _claimed(worker, "nx3")
    reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/fail",
                              {"error": "boom", "next": {"queues": ["nx3b"]}})
    assert reply.status == 200, reply.text
    assert reply.body["will_retry"] is False and reply.body["next"]["job"]["id"] == two["id"]
    assert (await api.job(one["id"]))["status"] == "failure"

    released = await worker.post(f"/api/jobs/{reply.body['next']['lease']['lease_id']}/release",
                                 {"next": {}})
    assert released.status == 200, released.text
    # the released job is back at the head of its queue and is the next one again
    assert released.body["ok"] is True
    assert released.body["next"]["job"]["id"] in (two["id"], three["id"])


async def test_a_next_the_worker_may_not_claim_changes_nothing(api: Api) -> None:
    worker = await api.register("w-strict", labels=["cpu"])
    job = await api.submit(command="a", queue="nx4")
    claim = await _claimed(worker, "nx4")
    reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {"next": {"labels": ["gpu"]}})
    assert reply.status == 403 and reply.body["error"] == "labels_not_registered"
    assert (await api.job(job["id"]))["status"] == "running"  # not completed
    bad = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                            {"next": {"max_jobs": 0}})
    assert bad.status == 400
    assert (await api.job(job["id"]))["status"] == "running"


async def test_a_draining_worker_finishes_but_gets_no_next_job(api: Api) -> None:
    worker = await api.register("w-drain-next")
    first = await api.submit(command="a", queue="nx5")
    await api.submit(command="b", queue="nx5")
    claim = await _claimed(worker, "nx5")
    assert (await api.post("/api/workers/w-drain-next/drain")).status == 200
    reply = await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete", {"next": {}})
    assert reply.body == {"ok": True, "next": None}
    assert (await api.job(first["id"]))["status"] == "success"


async def test_a_replayed_complete_with_next_claims_again(api: Api) -> None:
    worker = await api.register("w-replay-next")
    await api.submit(command="a", queue="nx6")
    second = await api.submit(command="b", queue="nx6")
    claim = await _claimed(worker, "nx6")
    path = f"/api/jobs/{claim['lease']['lease_id']}/complete"
    assert (await worker.post(path, {})).status == 200
    again = await worker.post(path, {"next": {}})
    assert again.status == 200, again.text
    assert again.body["replayed"] is True and again.body["next"]["job"]["id"] == second["id"]
    other = await api.register("w-not-owner")
    refused = await other.post(path, {"next": {}})
    assert refused.status == (await other.post(path, {})).status == 403
    assert refused.body["error"] == "not_lease_owner" and "next" not in refused.body


async def test_next_waits_for_a_job_when_asked(api: Api) -> None:
    worker = await api.register("w-wait-next")
    await api.submit(command="a", queue="nx7")
    claim = await _claimed(worker, "nx7")
    call = asyncio.create_task(worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                                           {"next": {"wait_secs": 5}}))
    await asyncio.sleep(0.3)
    assert not call.done()
    later = await api.submit(command="b", queue="nx7")
    reply = await call
    assert reply.body["next"]["job"]["id"] == later["id"]


async def test_batch_complete_and_fail_with_next_add_claims(api: Api) -> None:
    worker = await api.register("w-batch-next")
    for i in range(4):
        await api.submit(command=str(i), queue="nx8")
    batch = await worker.claim(queues=["nx8"], max_jobs=2)
    leases = [c["lease"]["lease_id"] for c in batch["claims"]]
    done = await worker.post("/api/leases/complete", {
        "completions": [{"lease_id": leases[0]}], "next": {"max_jobs": 1}})
    assert done.status == 200, done.text
    assert done.body["results"][0]["ok"] is True and len(done.body["claims"]) == 1
    failed = await worker.post("/api/leases/fail", {
        "failures": [{"lease_id": leases[1], "error": "x"}], "next": {"max_jobs": 3}})
    assert failed.status == 200, failed.text
    assert len(failed.body["claims"]) == 1  # one job left
    plain = await worker.post("/api/leases/complete", {
        "completions": [{"lease_id": done.body["claims"][0]["lease"]["lease_id"]}]})
    assert set(plain.body) == {"results"}


async def test_an_admin_names_the_worker_of_the_next_claim(api: Api) -> None:
    await api.ensure_worker("w-admin-next")
    await api.submit(command="a", queue="nx9")
    second = await api.submit(command="b", queue="nx9")
    claim = await api.claim("w-admin-next", queues=["nx9"])
    reply = await api.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                           {"next": {"worker_id": "w-admin-next"}})
    assert reply.status == 200, reply.text
    assert reply.body["next"]["job"]["id"] == second["id"]
    assert reply.body["next"]["lease"]["worker_id"] == "w-admin-next"


async def test_the_python_client_claims_with_its_report(api: Api) -> None:
    worker = await api.register("w-client-next")
    jobs = [await api.submit(command=str(i), queue="nx10") for i in range(4)]
    server = str(api.client.make_url("")).rstrip("/")
    async with LeaseholdClient(server, worker.token) as client:
        claims = await client.claim([], queues=["nx10"])
        claims = await client.complete(claims[0].lease.lease_id, {"x": 1},
                                       next_claim={"queues": ["nx10"]})
        assert [c.job.id for c in claims] == [jobs[1]["id"]]
        failed = await client.fail(claims[0].lease.lease_id, "no", next_claim={})
        assert failed.will_retry is False and [c.job.id for c in failed.claims] == [jobs[2]["id"]]
        claims = await client.release(failed.claims[0].lease.lease_id, next_claim={})
        assert [c.job.id for c in claims] in ([jobs[2]["id"]], [jobs[3]["id"]])
        assert await client.complete(claims[0].lease.lease_id) == []


async def test_the_agent_claims_its_next_job_with_its_report(
        api: Api, tmp_path: Path) -> None:
    """Four jobs through one agent slot: the first comes from a claim, the others with the
    report of the job before."""
    regtoken = await api.registration_token()
    server = str(api.client.make_url("")).rstrip("/")
    jobs = [await api.submit(command="true", queue="nx11") for _ in range(4)]
    scheduler: Any = api.app[SERVICES].scheduler
    original = scheduler.complete_claim
    chained: list[str] = []

    async def counted(*args: Any, **kw: Any) -> Any:
        done, batch = await original(*args, **kw)
        chained.extend(claim.job.id for claim in batch.claims)
        return done, batch

    scheduler.complete_claim = counted
    agent = Agent(AgentConfig(server=server, token=regtoken, queues=["nx11"],
                              state_dir=tmp_path / "agent"))
    running = asyncio.create_task(agent.run())
    try:
        for _ in range(200):
            states = [(await api.job(j["id"]))["status"] for j in jobs]
            if all(s == "success" for s in states):
                break
            await asyncio.sleep(0.05)
        assert all(s == "success" for s in states), states
    finally:
        agent.stopping.set()
        await asyncio.wait_for(running, 20)
    assert chained == [j["id"] for j in jobs[1:]]
