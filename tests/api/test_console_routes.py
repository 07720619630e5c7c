"""The operator console's own reads: who the caller is, and a queue's jobs per minute."""

from __future__ import annotations

from typing import Any

from tests.api.harness import Api


async def test_me_names_the_callers_role_and_queues(api: Api) -> None:
    me = await api.get("/api/me")
    assert me.status == 200 and me.body["role"] == "admin" and me.body["queues"] is None
    _, viewer = await api.api_token("viewer", "watcher")
    seen = await api.get("/api/me", token=viewer)
    assert seen.body["role"] == "viewer" and seen.body["name"] == "watcher"


async def test_activity_counts_finished_jobs_per_minute(api: Api) -> None:
    worker = await api.register("busy")
    for outcome in ("complete", "fail"):
        await api.submit(command=outcome)
        claim = await worker.claim()
        body: dict[str, Any] = {"outputs": {}} if outcome == "complete" else {"error": "no"}
        assert (await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/{outcome}",
                                  body)).status == 200
    activity = await api.get("/api/queues/default/activity", params={"minutes": "5"})
    assert activity.status == 200 and len(activity.body["minute_ms"]) == 5
    assert (sum(activity.body["success"]), sum(activity.body["failure"])) == (1, 1)
    assert (await api.get("/api/queues/default/activity?minutes=0")).status == 400
