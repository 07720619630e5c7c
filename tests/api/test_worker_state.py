"""Workers are idle or busy with a current job; claims and lease calls are signs of life; a
worker restarting under its id replaces its registration (auth off, or with its own token)."""

from __future__ import annotations

from leasehold.api.server.appkeys import SERVICES
from tests.api.harness import Api


async def _worker(api: Api, worker_id: str) -> dict[str, object]:
    reply = await api.get(f"/api/workers/{worker_id}")
    assert reply.status == 200, reply.text
    return dict(reply.body)


async def test_a_worker_is_busy_while_it_holds_a_lease(api: Api) -> None:
    worker = await api.register("wbusy")
    idle = await _worker(api, "wbusy")
    assert (idle["status"], idle["current_job"], idle["running_jobs"]) == ("idle", None, 0)
    job = await api.submit(command="sleep 1")
    lease = (await worker.claim())["lease"]
    busy = await _worker(api, "wbusy")
    assert (busy["status"], busy["current_job"], busy["running_jobs"]) == ("busy", job["id"], 1)
    for status, found in (("online", True), ("busy", True), ("idle", False), ("offline", False)):
        listed = (await api.get("/api/workers", params={"status": status})).body
        assert ("wbusy" in [w["worker_id"] for w in listed]) is found, status
    await worker.post(f"/api/jobs/{lease['lease_id']}/complete")
    assert (await _worker(api, "wbusy"))["status"] == "idle"
    assert (await api.get("/api/workers", params={"status": "sleepy"})).status == 400


async def test_a_worker_that_only_claims_stays_online(api: Api) -> None:
    worker = await api.register("wclaims")
    redis = api.app[SERVICES].redis
    key = api.app[SERVICES].scheduler.keys.worker("wclaims")
    # as the reaper leaves a worker silent past LEASEHOLD_WORKER_OFFLINE_SECS
    await redis.hset(key, mapping={"status": "offline", "last_heartbeat_ms": 1})
    assert (await _worker(api, "wclaims"))["status"] == "offline"
    assert await worker.claim() is None  # an empty claim is a sign of life too
    await api.app[SERVICES].workers.flush()  # what the once-a-second writer does
    seen = await _worker(api, "wclaims")
    assert seen["status"] == "idle" and int(str(seen["last_heartbeat_ms"])) > 1

    await api.submit(command="x")
    lease = (await worker.claim())["lease"]["lease_id"]
    await redis.hset(key, mapping={"status": "offline", "last_heartbeat_ms": 1})
    assert (await worker.post(f"/api/jobs/{lease}/heartbeat")).status == 200
    await api.app[SERVICES].workers.flush()
    assert (await _worker(api, "wclaims"))["status"] == "busy"


async def test_with_auth_off_a_restarted_worker_replaces_its_registration(open_api: Api) -> None:
    first = await open_api.post("/api/workers/register", {"worker_id": "w1", "labels": ["a"]})
    assert first.status == 201
    again = await open_api.post("/api/workers/register", {"worker_id": "w1", "labels": ["b"]})
    assert again.status == 201, again.text
    assert (await open_api.get("/api/workers/w1")).body["labels"] == ["b"]


async def test_with_auth_on_only_the_worker_itself_replaces_a_live_registration(api: Api) -> None:
    worker = await api.register("wlive", ["a"])
    token = await api.registration_token()
    taken = await api.as_(token).post("/api/workers/register",
                                      {"worker_id": "wlive", "labels": ["b"]})
    assert taken.status == 409, taken.text
    assert (await api.post("/api/workers/register",
                           {"worker_id": "wlive", "labels": ["b"]})).status == 409  # admin too
    other = await api.register("wother")
    refused = await other.post("/api/workers/register", {"worker_id": "wlive", "labels": ["b"]})
    assert refused.status == 403
    await api.submit(command="x", required_labels=["a"])
    held = (await worker.claim(labels=["a"]))["lease"]["lease_id"]
    replaced = await worker.post("/api/workers/register", {"worker_id": "wlive", "labels": ["b"]})
    assert replaced.status == 201, replaced.text
    assert (await api.get("/api/workers/wlive")).body["labels"] == ["b"]
    fresh = api.as_(replaced.body["worker_token"])
    assert (await fresh.get("/api/workers/wlive")).status == 200
    assert (await worker.get("/api/workers/wlive")).status == 401  # the old token is gone
    assert (await fresh.post(f"/api/jobs/{held}/heartbeat")).status == 409  # released
