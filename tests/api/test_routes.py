"""The success path of the routes no other module needs, and the check that every route has one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from leasehold.api.server.routing import router
from tests.api.conftest import whole_api_suite_selected
from tests.api.harness import ADMIN, COVERED, Api

WORKFLOW = {"name": "build", "jobs": [
    {"id": "compile", "command": "make", "required_labels": ["linux"]},
    {"id": "test", "command": "make test", "depends_on": ["compile"]}]}
SEED_YAML = b"""name: seed
on: push
jobs:
  fetch:
    run: git fetch
  build:
    needs: fetch
    steps:
      - name: compile
        run: make
"""


async def sse_events(api: Api, path: str, until: str, token: str | None = ADMIN,
                     after_open: Any = None) -> list[dict[str, str]]:
    """Reads SSE events from ``path`` until one of type ``until`` arrives (or the stream ends)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events: list[dict[str, str]] = []
    async with api.client.get(path, headers=headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        if after_open is not None:
            await after_open()
        current: dict[str, str] = {}
        async with asyncio.timeout(5):
            while line := (await resp.content.readline()).decode():
                line = line.rstrip("\r\n")
                if not line:
                    if current:
                        events.append(current)
                        if current.get("event") == until:
                            return events
                    current = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    current[key] = value.removeprefix(" ")
    return events


async def test_health_queues_bulk_retry_and_tokens(api: Api) -> None:
    assert (await api.get("/healthz", token=None)).body == {"status": "ok"}
    ready = (await api.get("/readyz", token=None)).body
    assert ready["status"] == "ready" and "reaper_last_pass_age_secs" in ready
    bulk = await api.post("/api/jobs/bulk", {"jobs": [{"command": "a"}, {"command": "b"}]})
    assert bulk.status == 201
    assert [job["command"] for job in bulk.body["jobs"]] == ["a", "b"]
    paused = await api.put("/api/queues/default", {"paused": True, "max_running": 5,
                                                   "rate_limit": {"limit": 10, "per_secs": 1}})
    assert paused.status == 200 and paused.body["paused"] is True
    assert paused.body["max_running"] == 5 and paused.body["rate_limit"]["limit"] == 10
    assert await api.claim("w1") is None
    queue = await api.get("/api/queues/default")
    assert queue.body["ready"] == 2 and queue.body["paused"] is True
    await api.put("/api/queues/default", {"paused": False})
    queues = await api.get("/api/queues")
    assert [q["queue"] for q in queues.body] == ["default"]

    lease = (await api.claim("w1"))["lease"]
    failed = await api.post(f"/api/jobs/{lease['lease_id']}/fail", {"error": "boom"})
    assert failed.body == {"will_retry": False, "retry_at_ms": None}
    retried = await api.post(f"/api/jobs/{lease['job_id']}/retry")
    assert retried.status == 202
    assert retried.body == {"id": lease["job_id"], "status": "queued",
                            "previous_status": "failure"}
    assert (await api.job(lease["job_id"]))["status"] == "queued"

    token_id, metrics = await api.api_token("metrics", "scraper")
    scrape = await api.get("/metrics", token=metrics)
    assert scrape.status == 200 and "leasehold_jobs_submitted_total" in scrape.text
    assert (await api.get("/metrics", token=None)).status == 401
    assert (await api.delete(f"/api/tokens/{token_id}")).body["deleted"] is True
    assert (await api.get("/metrics", token=metrics)).status == 401


async def test_workers_list_get_and_heartbeat_by_header(api: Api) -> None:
    worker = await api.register("wl", ["gpu", "linux"])
    await api.post("/api/workers/register", {"worker_id": "wl2", "labels": ["linux"]})
    listed = await api.get("/api/workers", params={"label": "gpu"})
    assert [w["worker_id"] for w in listed.body] == ["wl"]
    assert len((await api.get("/api/workers", params={"status": "online"})).body) == 2
    assert (await api.get("/api/workers", params={"status": "gone"})).status == 400
    beat = await api.post("/api/workers/heartbeat", {"version": "1.2"},
                          headers={"X-Worker-ID": "wl"})
    assert beat.body == {"drain": False, "worker_id": "wl"}
    own = await worker.get("/api/workers/wl")
    assert own.body["labels"] == ["gpu", "linux"] and own.body["version"] == "1.2"


async def test_logs_history_stream_and_ticket(api: Api) -> None:
    worker = await api.register("wlog")
    job = await api.submit(command="echo")
    lease_id = (await worker.claim())["lease"]["lease_id"]
    pushed = await worker.post(f"/api/jobs/{lease_id}/logs", {"chunks": [
        {"data": "one\n", "sequence": 0}, {"data": "two\n", "stream": "stderr", "sequence": 1}]})
    assert pushed.status == 202 and pushed.body["appended"] == 2
    resent = await worker.post(f"/api/jobs/{lease_id}/logs", {"chunks": [
        {"data": "one\n", "sequence": 0}]})
    assert resent.body["appended"] == 0 and resent.body["dropped"] == 1
    seed000 = await worker.post(f"/api/jobs/{lease_id}/logs",
                                {"log_chunk": "three\n", "stream_type": "system"})
    assert seed000.status == 202
    history = await api.get(f"/api/jobs/{job['id']}/logs")
    assert [(c["data"], c["stream"]) for c in history.body] == [
        ("one\n", "stdout"), ("two\n", "stderr"), ("three\n", "system")]
    page = await api.get(f"/api/jobs/{job['id']}/logs",
                         params={"after": history.body[0]["id"], "limit": "1"})
    assert [c["data"] for c in page.body] == ["two\n"]
    await worker.post(f"/api/jobs/{lease_id}/complete")

    path = f"/api/jobs/{job['id']}/logs/stream"
    events = await sse_events(api, path, "end")
    assert [e["event"] for e in events] == ["log", "log", "log", "end"]
    assert [e["id"] for e in events[:3]] == [c["id"] for c in history.body]
    assert orjson.loads(events[-1]["data"]) == {"status": "success"}

    _, viewer = await api.api_token("viewer")
    ticket = (await api.post("/api/stream-tickets", {"path": path}, token=viewer)).body["ticket"]
    with_ticket = await sse_events(api, f"{path}?ticket={ticket}", "end", token=None)
    assert [e["event"] for e in with_ticket][-1] == "end"
    not_a_stream = await api.get(f"/api/jobs/{job['id']}/logs?ticket={ticket}", token=None)
    assert not_a_stream.status == 401
    other_job = await api.get(f"/api/jobs/default.AAAAAAAAAAAAAAAAAAAAAA/logs/stream"
                              f"?ticket={ticket}", token=None)
    assert other_job.status == 401 and other_job.body["error"] == "unauthorized"
    # A worker may not read logs or events, and a ticket grants no more than its issuer's role.
    for stream in (path, "/api/events"):
        issued = await worker.post("/api/stream-tickets", {"path": stream})
        assert issued.status == 201
        refused = await api.get(f"{stream}?ticket={issued.body['ticket']}", token=None)
        assert refused.status == 403 and refused.body["error"] == "forbidden"


async def test_events_stream_reports_job_transitions(api: Api) -> None:
    await api.submit(command="first")

    async def submit() -> None:
        await api.submit(command="second")

    events = await sse_events(api, "/api/events?queue=default", "job", after_open=submit)
    data = orjson.loads(events[-1]["data"])
    assert data["queue"] == "default" and data["to"] == "queued" and events[-1]["id"]


async def test_workflow_routes(api: Api) -> None:
    created = await api.post("/api/workflows", WORKFLOW)
    assert created.status == 201, created.text
    wf = created.body["id"]
    assert [j["id"] for j in created.body["jobs"]] == ["compile", "test"]
    run = await api.post(f"/api/workflows/{wf}/run")
    assert run.status == 202 and set(run.body["jobs"]) == {"compile", "test"}
    busy = await api.post(f"/api/workflows/{wf}/run")
    assert busy.status == 202 and busy.body["started"] is False

    first = await api.claim("w1", labels=["linux"])
    assert first["job"]["job_id"] == "compile" and first["job"]["workflow_id"] == wf
    assert (await api.get(f"/api/jobs/{wf}/compile/cancelled")).text == "false"
    await api.post(f"/api/jobs/{first['lease']['lease_id']}/logs", {"log_chunk": "cc\n"})
    await api.post(f"/api/jobs/{first['lease']['lease_id']}/complete",
                   {"outputs": {"bin": "a.out"}})
    logs = await api.get(f"/api/workflows/{wf}/jobs/compile/logs")
    assert [c["data"] for c in logs.body] == ["cc\n"]
    stream = await sse_events(api, f"/api/workflows/{wf}/jobs/compile/logs/stream", "end")
    assert [e["event"] for e in stream] == ["log", "end"]

    second = await api.claim("w1")
    assert second["job"]["job_id"] == "test"
    assert second["job"]["upstream_outputs"] == {"compile": {"bin": "a.out"}}
    cancelled = await api.post(f"/api/workflows/{wf}/cancel")
    assert cancelled.status == 202 and cancelled.body == {"id": wf, "cancelled": 1}
    assert (await api.get(f"/api/jobs/{wf}/test/cancelled")).body is True
    status = await api.get(f"/api/workflows/{wf}/status")
    assert {j["id"]: j["status"] for j in status.body["jobs"]} == {
        "compile": "success", "test": "cancelled"}
    runs = await api.get(f"/api/workflows/{wf}/runs")
    assert [r["run_id"] for r in runs.body] == [run.body["run_id"]]

    yaml = await api.post("/api/workflows", data=SEED_YAML,
                          headers={"Content-Type": "application/yaml"})
    assert yaml.status == 201 and [j["id"] for j in yaml.body["jobs"]] == ["fetch", "build"]
    sample = await api.post("/api/workflows/sample")
    assert sample.status == 201 and sample.body["id"] == "ci-1"
    listed = await api.get("/api/workflows")
    assert [w["id"] for w in listed.body] == [wf, yaml.body["id"], "ci-1"]
    assert [w["id"] for w in (await api.get("/api/workflows?status=cancelled")).body] == [wf]


def test_every_route_has_a_success_test(request: pytest.FixtureRequest) -> None:
    """Runs last (see conftest); a route added without a test that succeeds on it fails here."""
    if not whole_api_suite_selected(request.session):
        pytest.skip("route coverage needs the whole tests/api suite in one run")
    routes = {(spec.method, spec.path) for spec in router.specs}
    assert routes - COVERED == set()
