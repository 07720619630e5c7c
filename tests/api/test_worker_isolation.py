"""A worker's labels are its own; revoking or replacing a worker leaves it no lease; silent
workers are forgotten after their retention."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import ClaimBatch
from leasehold.scheduler.keys import Keyspace
from leasehold.scheduler.reaper import Reaper
from tests.api.harness import Api, snapshot

DAY_MS = 86_400_000


async def queued_job(api: Api, **spec: Any) -> str:
    return str((await api.submit(command="make", **spec))["id"])


async def test_a_worker_claims_only_with_labels_it_registered(
        api: Api, redis: aioredis.Redis, settings: Settings) -> None:
    worker = await api.register("w-cpu", ["cpu"])
    secret = await queued_job(api, required_labels=["gpu", "prod-secrets"])
    before = await snapshot(redis, settings.namespace)

    refused = await worker.post("/api/jobs/claim", {"labels": ["cpu", "gpu", "prod-secrets"]})
    assert refused.status == 403, refused.text
    assert refused.body["error"] == "labels_not_registered"
    assert refused.body["labels"] == ["gpu", "prod-secrets"]
    assert await snapshot(redis, settings.namespace) == before  # nothing changed

    # Omitted labels are the registered ones: the gpu job stays out of reach.
    assert (await worker.post("/api/jobs/claim", {})).body is None
    cpu_job = await queued_job(api, required_labels=["cpu"])
    assert (await worker.post("/api/jobs/claim", {})).body["job"]["id"] == cpu_job
    # A subset of the registered labels is fine.
    plain = await queued_job(api)
    assert (await worker.claim(labels=[]))["job"]["id"] == plain
    assert (await api.job(secret))["status"] == "queued"


async def test_patch_changes_labels_name_and_metadata_and_the_next_claim_uses_them(
        api: Api) -> None:
    worker = await api.register("w-patch", ["cpu"])
    job = await queued_job(api, required_labels=["gpu"])
    assert (await worker.post("/api/jobs/claim", {"labels": ["gpu"]})).status == 403

    patched = await api.call("PATCH", "/api/workers/w-patch", {
        "labels": ["gpu", "cpu"], "name": "rig-1", "metadata": {"rack": 7}})
    assert patched.status == 200, patched.text
    assert (patched.body["labels"], patched.body["name"], patched.body["metadata"]) == (
        ["cpu", "gpu"], "rig-1", {"rack": 7})
    assert (await worker.claim(labels=["gpu"]))["job"]["id"] == job

    kept = await api.call("PATCH", "/api/workers/w-patch", {"metadata": {}})
    assert (kept.body["labels"], kept.body["name"], kept.body["metadata"]) == (
        ["cpu", "gpu"], "rig-1", {})


async def test_patch_refuses_a_live_workers_name_an_unknown_worker_and_a_non_admin(
        api: Api) -> None:
    worker = await api.register("w-a", [])
    await api.register("w-b", [])
    taken = await api.call("PATCH", "/api/workers/w-a", {"name": "w-b"})
    assert (taken.status, taken.body["error"]) == (409, "conflict")
    assert (await api.get("/api/workers/w-a")).body["name"] == "w-a"
    missing = await api.call("PATCH", "/api/workers/nobody", {"labels": ["x"]})
    assert (missing.status, missing.body["error"]) == (404, "worker_not_found")
    bad = await api.call("PATCH", "/api/workers/w-a", {"labels": "gpu"})
    assert bad.status == 400
    own = await worker.call("PATCH", "/api/workers/w-a", {"labels": ["gpu"]})
    assert own.status == 403
    assert (await api.get("/api/workers/w-a")).body["labels"] == []


async def test_an_admin_claims_only_for_a_registered_worker(
        api: Api, redis: aioredis.Redis, settings: Settings) -> None:
    await queued_job(api)
    before = await snapshot(redis, settings.namespace)
    unknown = await api.post("/api/jobs/claim", {"worker_id": "ghost", "labels": []})
    assert (unknown.status, unknown.body["error"]) == (404, "worker_not_found")
    assert await snapshot(redis, settings.namespace) == before
    await api.register("w-known", ["linux"])
    leased = await api.post("/api/jobs/claim", {"worker_id": "w-known"})
    assert leased.status == 200 and leased.body["lease"]["worker_id"] == "w-known"


Claimer = Callable[..., Awaitable[ClaimBatch]]


@pytest.mark.parametrize("revoke_first", [True, False], ids=["revoke-mid-claim",
                                                             "revoke-after-script"])
async def test_a_claim_racing_a_revoke_keeps_no_lease(
        api: Api, monkeypatch: pytest.MonkeyPatch, revoke_first: bool) -> None:
    """The claim authenticated before the revoke; the revoke lands before or after the claim
    script. Either way, once both replied, the job is back in its queue with no attempt used."""
    worker = await api.register("w-race", [])
    job = await queued_job(api)
    scheduler = api.app[SERVICES].scheduler
    real: Claimer = scheduler.claim
    revoked: list[int] = []

    async def claim_during_revoke(*args: Any, **kwargs: Any) -> ClaimBatch:
        if revoke_first:
            revoked.append((await api.delete("/api/workers/w-race")).status)
        batch = await real(*args, **kwargs)
        if not revoke_first:
            revoked.append((await api.delete("/api/workers/w-race")).status)
        return batch

    monkeypatch.setattr(scheduler, "claim", claim_during_revoke)
    reply = await worker.post("/api/jobs/claim", {})
    assert revoked == [200]
    assert reply.status == 200 and reply.body is None
    monkeypatch.setattr(scheduler, "claim", real)
    after = await api.job(job)
    assert (after["status"], after["attempt"]) == ("queued", 0)
    assert (await worker.post("/api/jobs/claim", {})).status == 401
    await api.register("w-other", [])
    assert (await api.claim("w-other"))["job"]["id"] == job


async def make_offline(redis: aioredis.Redis, settings: Settings, worker_id: str) -> None:
    """As if the worker's last sign of life was long ago."""
    await redis.hset(Keyspace(settings.namespace).worker(worker_id),
                     items=["last_heartbeat_ms", 1, "status", "offline"])


async def test_registering_an_offline_workers_id_does_not_inherit_its_leases(
        api: Api, redis: aioredis.Redis, settings: Settings) -> None:
    old = await api.register("w-reuse", [])
    job = await queued_job(api)
    lease = (await old.claim())["lease"]["lease_id"]
    await make_offline(redis, settings, "w-reuse")

    new = await api.register("w-reuse", [])  # takes the id over: 201
    after = await api.job(job)
    assert (after["status"], after["attempt"]) == ("queued", 0)  # back, no attempt used
    assert (await new.post(f"/api/jobs/{lease}/complete")).status == 409
    assert (await old.post(f"/api/jobs/{lease}/complete")).status == 401
    again = await new.claim()
    assert again["job"]["id"] == job and again["lease"]["lease_id"] != lease
    assert (await new.post(f"/api/jobs/{again['lease']['lease_id']}/complete")).status == 200


async def test_the_reaper_forgets_workers_silent_past_retention(
        api: Api, redis: aioredis.Redis, settings: Settings) -> None:
    keys = Keyspace(settings.namespace)
    gone = await api.register("w-gone", ["x"])
    await api.register("w-stays", ["x"])
    now = int((await redis.time())[0]) * 1000
    await redis.hset(keys.worker("w-stays"), "last_heartbeat_ms", now + 8 * DAY_MS - 1000)
    reaper = Reaper(api.app[SERVICES].scheduler)

    await reaper.run_once(now_ms=now + 2 * DAY_MS)  # offline, not yet past retention
    assert (await api.get("/api/workers/w-gone")).body["status"] == "offline"
    await reaper.run_once(now_ms=now + 7 * DAY_MS + 1000)

    assert (await api.get("/api/workers/w-gone")).status == 404
    assert (await gone.get("/api/workers/w-gone")).status == 401  # its token went with it
    assert [w["worker_id"] for w in (await api.get("/api/workers")).body] == ["w-stays"]
    assert await redis.hgetall(keys.worker_names) == {"w-stays": "w-stays"}
    assert await redis.zrange(keys.workers, 0, -1) == ["w-stays"]
    worker_keys = [k async for k in redis.scan_iter(match=keys.global_prefix + "*")]
    assert not [k for k in worker_keys if "w-gone" in k]
    assert len([k async for k in redis.scan_iter(match=keys.token_prefix + "*")]) == 1


async def test_the_sweep_walks_past_removed_workers_in_batches(
        api: Api, redis: aioredis.Redis, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from leasehold.scheduler import workers as workers_module

    monkeypatch.setattr(workers_module, "SWEEP_BATCH", 3)
    for n in range(8):
        await api.post("/api/workers/register", {"worker_id": f"w{n}", "labels": []})
    now = int((await redis.time())[0]) * 1000
    keys = Keyspace(settings.namespace)
    for n in (1, 2, 3, 5):  # these keep beating; the others fall silent
        await redis.hset(keys.worker(f"w{n}"), "last_heartbeat_ms", now + 8 * DAY_MS)
    await Reaper(api.app[SERVICES].scheduler).run_once(now_ms=now + 8 * DAY_MS)
    assert sorted(await redis.zrange(keys.workers, 0, -1)) == ["w1", "w2", "w3", "w5"]
