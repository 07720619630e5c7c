"""Our replies through a strict deserializer mirroring workflow-graph's own types (its Rust
worker SDK's serde structs and its TypeScript client's interfaces): integers must be integers,
and every field the seed declares is present with its type."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tests.api.harness import Api

U64 = Annotated[int, Field(ge=0)]


class Seed(BaseModel):
    """serde's defaults: unknown fields ignored; a number field refuses 30.0 (strict)."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Fixed(Seed):
    delay_secs: U64


class Exponential(Seed):
    base_secs: U64
    max_secs: U64


class FixedBackoff(Seed):
    Fixed: Fixed


class ExponentialBackoff(Seed):
    Exponential: Exponential


class RetryPolicy(Seed):
    max_retries: U64
    backoff: Literal["None"] | FixedBackoff | ExponentialBackoff


class QueuedJob(Seed):
    job_id: str
    workflow_id: str
    command: str
    required_labels: list[str]
    retry_policy: RetryPolicy
    attempt: U64
    upstream_outputs: dict[str, dict[str, str]]
    enqueued_at_ms: U64
    delayed_until_ms: U64 = 0


class Lease(Seed):
    lease_id: str
    job_id: str
    workflow_id: str
    worker_id: str
    ttl_secs: U64
    granted_at_ms: U64


class ClaimResponse(Seed):
    job: QueuedJob
    lease: Lease


class Job(Seed):
    id: str
    name: str
    status: str
    command: str
    duration_secs: U64 | None = None
    started_at: U64 | None = None
    depends_on: list[str]
    output: str | None = None


class Workflow(Seed):
    id: str
    name: str
    trigger: str
    jobs: list[Job]


class WorkerInfo(Seed):
    worker_id: str
    labels: list[str]
    registered_at_ms: U64
    last_heartbeat_ms: U64
    current_job: str | None  # declared (Option): present, null when idle
    status: Literal["idle", "busy", "offline"]


PIPELINE = {"name": "seed pipeline", "trigger": "push", "jobs": [
    {"id": "build", "name": "Build", "command": "cargo build", "depends_on": [],
     "required_labels": ["docker"], "status": "queued", "duration_secs": None, "output": None},
    {"id": "test", "name": "Test", "command": "cargo test", "depends_on": ["build"],
     "required_labels": ["docker"], "retry_policy": {"max_retries": 2, "backoff": {
         "Exponential": {"base_secs": 1, "max_secs": 30}}}},
]}


async def test_the_worker_protocol_and_workflow_api_pass_a_strict_seed_deserializer(
        open_api: Api) -> None:
    reply = await open_api.post("/api/workers/register", {"worker_id": "w1", "labels": ["docker"]})
    assert reply.status == 201
    workers = TypeAdapter(list[WorkerInfo]).validate_json((await open_api.get("/api/workers")).text)
    assert [(w.worker_id, w.status, w.current_job) for w in workers] == [("w1", "idle", None)]

    created = await open_api.post("/api/workflows", PIPELINE)
    assert created.status == 201, created.text
    wf = Workflow.model_validate_json(created.text)
    assert (await open_api.post(f"/api/workflows/{wf.id}/run")).status == 202

    claim = {"worker_id": "w1", "labels": ["docker"], "lease_ttl_secs": 30}
    first = ClaimResponse.model_validate_json((await open_api.post("/api/jobs/claim", claim)).text)
    assert (first.job.job_id, first.job.workflow_id, first.lease.ttl_secs) == ("build", wf.id, 30)
    workers = TypeAdapter(list[WorkerInfo]).validate_json((await open_api.get("/api/workers")).text)
    assert workers[0].status == "busy" and workers[0].current_job  # the id of the job it holds
    running = Workflow.model_validate_json((await open_api.get(
        f"/api/workflows/{wf.id}/status")).text)
    assert running.jobs[0].status == "running" and running.jobs[0].started_at is not None

    await open_api.post(f"/api/jobs/{first.lease.lease_id}/complete",
                        {"outputs": {"artifact": "target/app"}})
    second = ClaimResponse.model_validate_json((await open_api.post("/api/jobs/claim", claim)).text)
    assert second.job.job_id == "test"
    assert second.job.upstream_outputs == {"build": {"artifact": "target/app"}}
    assert second.job.retry_policy.backoff == ExponentialBackoff(
        Exponential=Exponential(base_secs=1, max_secs=30))
    failed = await open_api.post(f"/api/jobs/{second.lease.lease_id}/fail",
                                 {"error": "flaky", "retryable": True})
    assert isinstance(failed.body["retry_at_ms"], int)

    done = Workflow.model_validate_json((await open_api.get(f"/api/workflows/{wf.id}/status")).text)
    assert done.jobs[0].status == "success" and isinstance(done.jobs[0].duration_secs, int)
    listed = TypeAdapter(list[Workflow]).validate_json((await open_api.get("/api/workflows")).text)
    assert [w.id for w in listed] == [wf.id]


async def test_a_workflow_created_without_a_trigger_still_has_a_string_trigger(
        open_api: Api) -> None:
    body = {"name": "no trigger", "jobs": [{"id": "a", "command": "true"}]}
    created = await open_api.post("/api/workflows", body)
    assert created.status == 201, created.text
    assert Workflow.model_validate_json(created.text).trigger == "manual"
