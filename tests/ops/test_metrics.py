"""``GET /metrics``: SPEC §7 names with exact values after a workload, promtool-clean, by role."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.reaper import Reaper
from tests.ops.scrape import (
    DEPLOY,
    METRIC_NAME,
    Samples,
    family,
    parse,
    promtool_check_metrics,
    value,
)
from tests.redis_server import RedisServer

ADMIN = "lha_ops-admin-token-for-tests"
METRICS = "lhm_ops-metrics-token-for-tests"


async def _json(client: TestClient[Any, Any], method: str, path: str, body: Any = None,
                expect: int = 200) -> Any:
    resp = await client.request(method, path, json=body)
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def _claim(client: TestClient[Any, Any], queue: str, ttl: float = 30,
                 wait: float = 0) -> dict[str, Any]:
    claim = await _json(client, "POST", "/api/jobs/claim", {
        "worker_id": "w-ops", "queues": [queue], "lease_ttl_secs": ttl, "wait_secs": wait})
    assert claim is not None
    return dict(claim)


async def _scrape(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await resp.text()


async def _workload(client: TestClient[Any, Any], scheduler: Scheduler, qa: str,
                    qb: str) -> list[str]:
    """Every lifecycle path once; returns the ids it used (none may appear in the scrape)."""
    once = {"max_retries": 1, "backoff": "None"}
    await _json(client, "POST", "/api/workers/register", {"worker_id": "w-ops",
                                                          "labels": []}, 201)
    for priority in (1, 2, 3):
        await _json(client, "POST", "/api/jobs", {"command": "true", "queue": qa,
                    "priority": priority, "retry_policy": once}, 201)
    ok = await _claim(client, qa)
    await _json(client, "POST", f"/api/jobs/{ok['lease']['lease_id']}/complete", {})
    dead = await _claim(client, qa)
    await _json(client, "POST", f"/api/jobs/{dead['lease']['lease_id']}/fail", {"error": "no"})
    flaky = await _claim(client, qa)
    await _json(client, "POST", f"/api/jobs/{flaky['lease']['lease_id']}/heartbeat", {})
    retry = await _json(client, "POST", f"/api/jobs/{flaky['lease']['lease_id']}/fail",
                        {"error": "again", "retryable": True})
    assert retry["will_retry"] is True
    again = await _claim(client, qa, wait=2)  # long-poll path
    await _json(client, "POST", f"/api/jobs/{again['lease']['lease_id']}/complete", {})

    cancelled = await _json(client, "POST", "/api/jobs", {"command": "x", "queue": qb}, 201)
    await _json(client, "POST", f"/api/jobs/{cancelled['id']}/cancel", None, 202)
    await _json(client, "POST", "/api/jobs", {"command": "x", "queue": qb,
                                              "delay_secs": 3600}, 201)
    await _json(client, "POST", "/api/jobs", {"command": "x", "queue": qb}, 201)
    lost = await _claim(client, qb, ttl=1)
    await Reaper(scheduler).run_once(now_ms=lost["lease"]["expires_at_ms"] + 1)
    late = await client.post(f"/api/jobs/{lost['lease']['lease_id']}/complete", json={})
    assert late.status == 409
    return [ok["job"]["id"], dead["job"]["id"], flaky["job"]["id"], cancelled["id"],
            lost["lease"]["lease_id"], flaky["lease"]["lease_id"]]


def _assert_counts(samples: Samples, qa: str, qb: str) -> None:
    expected = {
        ("leasehold_jobs_submitted_total", qa): 3, ("leasehold_jobs_submitted_total", qb): 3,
        ("leasehold_jobs_claimed_total", qa): 4, ("leasehold_jobs_claimed_total", qb): 1,
        ("leasehold_jobs_retried_total", qa): 1, ("leasehold_jobs_retried_total", qb): 0,
        ("leasehold_leases_expired_total", qa): 0, ("leasehold_leases_expired_total", qb): 1,
    }
    for (name, queue), count in expected.items():
        assert value(samples, name, queue=queue) == count, (name, queue)
    finished = {(qa, "success"): 2, (qa, "failure"): 1, (qa, "cancelled"): 0,
                (qb, "success"): 0, (qb, "failure"): 1, (qb, "cancelled"): 1}
    for (queue, status), count in finished.items():
        assert value(samples, "leasehold_jobs_finished_total", queue=queue,
                     status=status) == count, (queue, status)
    jobs = {(qa, "failure"): 1, (qa, "ready"): 0, (qb, "scheduled"): 1, (qb, "failure"): 1,
            (qb, "running"): 0, (qb, "ready"): 0}
    for (queue, state), count in jobs.items():
        assert value(samples, "leasehold_queue_jobs", queue=queue, state=state) == count


async def test_scrape_after_a_workload_has_exact_values_and_passes_promtool(
        aiohttp_client: AiohttpClient, settings: Settings, scheduler: Scheduler) -> None:
    qa, qb = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    client = await aiohttp_client(create_app(settings.model_copy(update={"auth": False})))
    before = parse(await _scrape(client))
    assert "leasehold_reaper_last_pass_timestamp_seconds" not in {n for n, _ in before}
    ids = await _workload(client, scheduler, qa, qb)
    await _json(client, "GET", f"/api/jobs/{ids[0]}")
    text = await _scrape(client)
    samples = parse(text)

    _assert_counts(samples, qa, qb)
    assert value(samples, "leasehold_workers", status="online") == 1
    assert value(samples, "leasehold_reaper_passes_total") == 1
    assert value(samples, "leasehold_redis_up") == 1
    assert value(samples, "leasehold_queue_oldest_ready_age_seconds", queue=qb) == 0
    assert value(samples, "leasehold_job_wait_seconds_count", queue=qa) == 4
    for outcome, count in (("success", 2), ("failure", 1), ("retry", 1)):
        assert value(samples, "leasehold_job_run_seconds_count", queue=qa,
                     outcome=outcome) == count
    assert value(samples, "leasehold_http_request_duration_seconds_count", method="GET",
                 route="/api/jobs/{id}", status="200") >= 1
    assert value(samples, "leasehold_http_request_duration_seconds_count", method="POST",
                 route="/api/jobs/{lease_id}/complete", status="409") >= 1
    assert value(samples, "leasehold_claim_duration_seconds_count") >= 5
    for secret in ids:  # labels never carry ids
        assert secret not in text
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); values checked")
    checked = promtool_check_metrics(text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


async def test_oldest_ready_age_counts_from_enqueue(
        aiohttp_client: AiohttpClient, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"auth": False})))
    await _json(client, "POST", "/api/jobs", {"command": "x", "queue": "aging"}, 201)
    await asyncio.sleep(0.3)
    age = value(parse(await _scrape(client)), "leasehold_queue_oldest_ready_age_seconds",
                queue="aging")
    assert 0.3 <= age < 5


async def test_metrics_route_takes_the_metrics_or_admin_role(
        aiohttp_client: AiohttpClient, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth": True, "admin_token": ADMIN,
                                                 "metrics_token": METRICS}))
    client = await aiohttp_client(app)
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    viewer = await client.post("/api/tokens", json={"role": "viewer", "name": "v"},
                               headers=bearer)
    scraper = await client.post("/api/tokens", json={"role": "metrics", "name": "m"},
                                headers=bearer)
    tokens = {"viewer": (await viewer.json())["token"],
              "metrics": (await scraper.json())["token"]}

    async def status(path: str, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return (await client.get(path, headers=headers)).status

    assert await status("/metrics", None) == 401
    assert await status("/metrics", tokens["viewer"]) == 403
    assert await status("/metrics", tokens["metrics"]) == 200
    assert await status("/metrics", METRICS) == 200  # LEASEHOLD_METRICS_TOKEN
    assert await status("/metrics", ADMIN) == 200
    assert await status("/api/queues", METRICS) == 403  # a scraper reads nothing else


async def test_sse_streams_are_counted_while_open(
        aiohttp_client: AiohttpClient, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"auth": False})))

    async def open_streams() -> float:
        return value(parse(await _scrape(client)), "leasehold_sse_connections")

    before = await open_streams()
    stream = await client.get("/api/events", params={"queue": "default"})
    assert stream.status == 200
    assert await open_streams() == before + 1
    stream.close()
    for _ in range(100):
        if await open_streams() == before:
            break
        await asyncio.sleep(0.02)
    assert await open_streams() == before


async def test_scrape_without_redis_still_answers_with_redis_up_zero(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    try:
        settings = Settings(redis_url=server.url, auth=False, namespace="gone")
        client = await aiohttp_client(create_app(settings))
        assert value(parse(await _scrape(client)), "leasehold_redis_up") == 1
    finally:
        server.stop()
    samples = parse(await _scrape(client))
    assert value(samples, "leasehold_redis_up") == 0
    assert not family(samples, "leasehold_jobs_submitted_total")
    assert family(samples, "leasehold_http_request_duration_seconds_count")


def _referenced_metrics() -> dict[str, set[str]]:
    dashboard = (DEPLOY / "grafana" / "leasehold.json").read_text()
    json.loads(dashboard)
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    exprs = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    return {"deploy/grafana/leasehold.json": set(METRIC_NAME.findall(dashboard)),
            "deploy/alerts.yml": set(METRIC_NAME.findall(exprs))}


async def test_dashboard_and_alerts_use_only_metrics_the_service_exposes(
        aiohttp_client: AiohttpClient, settings: Settings, scheduler: Scheduler) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"auth": False})))
    await _workload(client, scheduler, f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}")
    exposed = {name for name, _ in parse(await _scrape(client))}
    for source, names in _referenced_metrics().items():
        assert names, source
        assert names - exposed == set(), source
