"""Over HTTP: a lost reply's retry gets 200 with replayed: true; another lease still gets 409."""

from __future__ import annotations

from tests.api.harness import Api


async def test_retried_complete_fail_and_release_replay_their_reply(api: Api) -> None:
    worker = await api.register("wr")
    await api.submit(command="a")
    lease = (await worker.claim())["lease"]["lease_id"]
    first = await worker.post(f"/api/jobs/{lease}/complete", {"outputs": {"n": 1}})
    assert first.status == 200 and first.body == {"ok": True}
    again = await worker.post(f"/api/jobs/{lease}/complete", {"outputs": {"n": 1}})
    assert again.status == 200 and again.body == {"ok": True, "replayed": True}
    beat = await worker.post(f"/api/jobs/{lease}/heartbeat")
    assert beat.status == 409 and beat.body["error"] == "job_finished"

    await api.submit(command="b")
    lease = (await worker.claim())["lease"]["lease_id"]
    first = await worker.post(f"/api/jobs/{lease}/fail", {"error": "x"})
    again = await worker.post(f"/api/jobs/{lease}/fail", {"error": "x"})
    assert first.body == {"will_retry": False, "retry_at_ms": None}
    assert again.status == 200 and again.body == {**first.body, "replayed": True}

    await api.submit(command="c")
    lease = (await worker.claim())["lease"]["lease_id"]
    assert (await worker.post(f"/api/jobs/{lease}/release")).body == {"ok": True}
    again = await worker.post(f"/api/jobs/{lease}/release")
    assert again.status == 200 and again.body == {"ok": True, "replayed": True}
    late = await worker.post(f"/api/jobs/{lease}/complete")
    assert late.status == 409 and late.body["error"] == "lease_not_found"

    batch = await worker.post("/api/leases/complete", {"completions": [{"lease_id": lease}]})
    assert batch.body["results"][0]["ok"] is False


async def test_a_batch_completion_retried_is_replayed(api: Api) -> None:
    worker = await api.register("wb")
    await api.submit(command="a")
    lease = (await worker.claim())["lease"]["lease_id"]
    body = {"completions": [{"lease_id": lease}]}
    first = (await worker.post("/api/leases/complete", body)).body["results"][0]
    again = (await worker.post("/api/leases/complete", body)).body["results"][0]
    assert first["ok"] is True and first["replayed"] is None
    assert again["ok"] is True and again["replayed"] is True
