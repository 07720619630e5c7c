"""``GET /metrics``: Prometheus text; the process-local histograms live here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.policy_metrics import policy_families
from leasehold.api.server.routing import router
from leasehold.scheduler import errors
from leasehold.scheduler.core import ClaimBatch
from leasehold.scheduler.metrics import Snapshot, snapshot
from leasehold.scheduler.models import JobStatus

log = structlog.get_logger("leasehold.metrics")

METRICS_ROLES = ("admin", "metrics")
SCRAPE_TIMEOUT_SECS = 5.0
QUEUE_STATES = ("ready", "scheduled", "waiting_deps", "running", "failure")
VERSION = web.AppKey("version", str)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FINISHED = tuple(status.value for status in JobStatus if status.terminal)
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_HTTP = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_JOB = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 86400.0)

# Process-local: each API process reports what it served; Prometheus sums over instances.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
CLAIM_DURATION = Histogram(
    "leasehold_claim_duration_seconds", "Time of one claim call (its Lua scripts), found or not",
    buckets=_FAST, registry=REGISTRY)
JOB_WAIT = Histogram(
    "leasehold_job_wait_seconds", "Claimed jobs: started minus enqueued, by Redis time",
    ["queue"], buckets=_JOB, registry=REGISTRY)
JOB_RUN = Histogram(
    "leasehold_job_run_seconds", "Attempts reported by complete/fail (single and batch): "
    "finished minus started, by Redis time", ["queue", "outcome"], buckets=_JOB,
    registry=REGISTRY)
HTTP_DURATION = Histogram(
    "leasehold_http_request_duration_seconds", "HTTP requests by route template",
    ["route", "method", "status"], buckets=_HTTP, registry=REGISTRY)
SSE_CONNECTIONS = Gauge(
    "leasehold_sse_connections", "Server-sent event streams open in this process",
    registry=REGISTRY)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"  # any token is a valid HTTP method
    HTTP_DURATION.labels(route=route, method=method, status=str(status)).observe(seconds)


def observe_claim(seconds: float, batch: ClaimBatch) -> None:
    """The scheduler's claim observer: claim latency, and each claimed job's wait."""
    CLAIM_DURATION.observe(seconds)
    for claim in batch.claims:
        job = claim.job
        if job.started_at_ms is not None and job.enqueued_at_ms is not None:
            JOB_WAIT.labels(queue=job.queue).observe(
                max(0, job.started_at_ms - job.enqueued_at_ms) / 1000)


def observe_run(queue: str, outcome: str, run_ms: int) -> None:
    JOB_RUN.labels(queue=queue, outcome=outcome).observe(run_ms / 1000)


def _queue_families(snap: Snapshot) -> Iterator[Metric]:
    def counter(name: str, text: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, text, labels=["queue"])

    submitted = counter("leasehold_jobs_submitted", "Jobs stored by submit (dedup hits excluded)")
    claimed = counter("leasehold_jobs_claimed", "Leases granted")
    retried = counter("leasehold_jobs_retried", "Attempts used by retryable failures and expiry")
    expired = counter("leasehold_leases_expired", "Leases the reaper expired")
    finished = CounterMetricFamily("leasehold_jobs_finished", "Jobs that reached a terminal "
                                   "status", labels=["queue", "status"])
    jobs = GaugeMetricFamily("leasehold_queue_jobs", "Jobs in each place of a queue now",
                             labels=["queue", "state"])
    oldest = GaugeMetricFamily("leasehold_queue_oldest_ready_age_seconds", "Age since enqueue "
                               "of the oldest ready job (0 when none is ready)", labels=["queue"])
    paused = GaugeMetricFamily("leasehold_queue_paused", "1 when the queue is paused",
                               labels=["queue"])
    for stats in snap.queues:
        q, counts = stats.queue, stats.counters
        submitted.add_metric([q], counts.get("submitted", 0))
        claimed.add_metric([q], counts.get("claimed", 0))
        retried.add_metric([q], counts.get("retried", 0))
        expired.add_metric([q], counts.get("leases_expired", 0))
        for status in FINISHED:
            finished.add_metric([q, status], counts.get(f"finished:{status}", 0))
        for state in QUEUE_STATES:
            jobs.add_metric([q, state], getattr(stats, state))
        oldest.add_metric([q], stats.oldest_ready_age_secs or 0.0)
        paused.add_metric([q], 1 if stats.paused else 0)
    yield from (submitted, claimed, retried, expired, finished, jobs, oldest, paused)


def _cluster_families(snap: Snapshot) -> Iterator[Metric]:
    workers = GaugeMetricFamily("leasehold_workers", "Registered workers by status",
                                labels=["status"])
    for status, count in snap.workers.items():
        workers.add_metric([status.value], count)
    yield workers
    yield CounterMetricFamily("leasehold_reaper_passes", "Reaper passes finished (all reapers)",
                              value=snap.reaper.passes)
    if snap.reaper.last_pass_ms is not None:  # absent until a reaper ran: alerts use absent()
        yield GaugeMetricFamily("leasehold_reaper_last_pass_timestamp_seconds",
                                "When a reaper last finished a pass (Unix time)",
                                value=snap.reaper.last_pass_ms / 1000)
    if snap.reaper.pass_duration_ms is not None:
        yield GaugeMetricFamily("leasehold_reaper_pass_duration_seconds",
                                "How long the last finished reaper pass took",
                                value=snap.reaper.pass_duration_ms / 1000)
    if snap.memory is not None:
        yield GaugeMetricFamily("leasehold_redis_used_memory_bytes",
                                "Redis INFO used_memory (cached a few seconds)",
                                value=snap.memory.used_bytes)
        yield GaugeMetricFamily("leasehold_redis_maxmemory_bytes",
                                "Redis maxmemory (0: no limit; with noeviction a full Redis "
                                "refuses writes)", value=snap.memory.max_bytes)


class Scrape:
    """One scrape: this process's metrics plus a snapshot already read from Redis."""

    def __init__(self, snap: Snapshot | None, version: str) -> None:
        self.snap = snap
        self.version = version

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        info = GaugeMetricFamily("leasehold_build_info", "Version of this process",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("leasehold_redis_up", "1 when this scrape could read Redis",
                                value=0 if self.snap is None else 1)
        if self.snap is not None:
            yield from _queue_families(self.snap)
            yield from _cluster_families(self.snap)
            yield from policy_families(self.snap)


@router.route("GET", "/metrics", roles=METRICS_ROLES, tag="operations",
              summary="Prometheus text exposition: counters kept in Redis by the "
              "scripts, queue and worker gauges read at scrape time, this process's histograms",
              errors=(401, 403))
async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    snap: Snapshot | None = None
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECS):
            snap = await snapshot(services.scheduler, services.workers)
    except errors.BACKEND_ERRORS as exc:  # still serve this process's metrics, redis_up 0
        log.warning("metrics_redis_unavailable", error=type(exc).__name__)
    body = generate_latest(Scrape(snap, request.app[VERSION]))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def install(app: web.Application, version: str) -> None:
    """Feeds the claim histograms from the scheduler once the app's services are open."""
    app[VERSION] = version

    async def hook(app: web.Application) -> None:
        app[SERVICES].scheduler.claim_observer = observe_claim

    app.on_startup.append(hook)
