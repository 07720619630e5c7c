"""HTTP request and response bodies that are not scheduler models."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from leasehold.scheduler.models import (
    RAW_FIELDS,
    Claim,
    Job,
    Label,
    Lease,
    QueueName,
    RunnableJobSpec,
    Secs,
    Strict,
    Worker,
)
from leasehold.scheduler.rawjson import EMPTY_OBJECT, RawObject

Ttl = Annotated[float, Field(gt=0, le=86400)]
LeaseId = Annotated[str, Field(min_length=1, max_length=300)]


class ErrorBody(BaseModel):
    error: str = Field(description="machine code, e.g. lease_expired")
    message: str
    request_id: str
    details: list[JsonValue] | None = None


class SubmittedJob(Job):
    deduplicated: bool = False


class BulkSubmit(Strict):
    raw_json_fields: ClassVar[frozenset[str]] = RAW_FIELDS
    jobs: list[RunnableJobSpec] = Field(
        min_length=1, max_length=1000,
        description="jobs of one queue (a job naming none is in queue default)")


class BulkSubmitted(BaseModel):
    jobs: list[SubmittedJob]


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None


class Accepted(BaseModel):
    id: str
    status: str
    previous_status: str | None = None


class Ok(BaseModel):
    ok: bool = True


class OkReplayed(Ok):
    """The reply of a call the same lease already made (its first reply was lost)."""

    replayed: Literal[True] = True


def _worker_id_for_admins(schema: dict[str, Any]) -> None:
    """An admin token must name the worker it claims for (403 without: an admin is no worker);
    a worker token may leave it out (its own id is used)."""
    schema["properties"]["worker_id"] = {
        "anyOf": [{"type": "string", "minLength": 1, "maxLength": 128}, {"type": "null"}],
        "default": None,
        "description": "the claiming worker: needed with an admin token (403 without); a "
                       "worker token may leave it out or must give its own id"}


class ClaimRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_worker_id_for_admins)

    worker_id: str | None = Field(default=None, max_length=128)
    labels: list[Label] = Field(default_factory=list, max_length=64)
    lease_ttl_secs: Ttl | None = None
    queues: list[QueueName] = Field(default_factory=lambda: ["default"], min_length=1,
                                    max_length=16)
    max_jobs: int | None = Field(default=None, ge=1, le=100)
    wait_secs: float = Field(default=0, ge=0, le=30)


class ClaimBatchReply(BaseModel):
    claims: list[Claim]


class LeaseHeartbeat(Strict):
    lease_ttl_secs: Ttl | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    message: str | None = Field(default=None, max_length=4096)


class HeartbeatReply(BaseModel):
    lease: Lease
    cancelled: bool


class NextClaim(Strict):
    """A claim made for the same worker after a lease call finishes its job (one request per
    job); ``queues`` defaults to the finished job's queue, ``labels`` to the worker's own."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_worker_id_for_admins)

    worker_id: str | None = Field(default=None, max_length=128)
    labels: list[Label] = Field(default_factory=list, max_length=64)
    queues: list[QueueName] | None = Field(default=None, min_length=1, max_length=16)
    lease_ttl_secs: Ttl | None = None
    max_jobs: int | None = Field(default=None, ge=1, le=100)
    wait_secs: float = Field(default=0, ge=0, le=30)


class CompleteFields(Strict):
    raw_json_fields: ClassVar[frozenset[str]] = RAW_FIELDS
    outputs: RawObject = Field(default_factory=lambda: RawObject(EMPTY_OBJECT),
                               description="a JSON object, stored and served byte for byte")
    verification: str | None = Field(
        default=None, max_length=1024,
        description="the value this completion vouches for (jobs with a verification quorum)")


class Complete(CompleteFields):
    next: NextClaim | None = None


class FailFields(Strict):
    error: str = Field(max_length=65536)
    retryable: bool = False


class Fail(FailFields):
    next: NextClaim | None = None


class Release(Strict):
    next: NextClaim | None = None


class WithNext(BaseModel):
    """What a lease call with ``next`` adds: the next claim, as the claim route answers it."""

    next: Claim | ClaimBatchReply | None


class OkNext(Ok, WithNext):
    pass


class OkReplayedNext(OkReplayed, WithNext):
    pass


class FailReply(BaseModel):
    will_retry: bool
    retry_at_ms: int | None = None


class FailReplayed(FailReply):
    """The reply of a fail the same lease already made (its first reply was lost)."""

    replayed: Literal[True] = True


class BatchHeartbeatItem(LeaseHeartbeat):
    lease_id: LeaseId


class BatchHeartbeat(Strict):
    leases: list[BatchHeartbeatItem] = Field(min_length=1, max_length=1000)


class FailNext(FailReply, WithNext):
    pass


class FailReplayedNext(FailReplayed, WithNext):
    pass


class BatchCompleteItem(CompleteFields):
    lease_id: LeaseId


class BatchComplete(Strict):
    raw_json_fields: ClassVar[frozenset[str]] = RAW_FIELDS
    completions: list[BatchCompleteItem] = Field(min_length=1, max_length=1000)
    next: NextClaim | None = None


class BatchFailItem(FailFields):
    lease_id: LeaseId


class BatchFail(Strict):
    failures: list[BatchFailItem] = Field(min_length=1, max_length=1000)
    next: NextClaim | None = None


class LeaseResult(BaseModel):
    lease_id: str
    ok: bool
    expires_at_ms: int | None = None
    cancelled: bool | None = None
    will_retry: bool | None = None
    retry_at_ms: int | None = None
    error: str | None = None
    message: str | None = None
    replayed: bool | None = None


class LeaseResults(BaseModel):
    results: list[LeaseResult]


class LeaseResultsNext(LeaseResults):
    claims: list[Claim]


class Register(Strict):
    worker_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, min_length=1, max_length=128)
    labels: list[Label] = Field(default_factory=list, max_length=64)
    version: str | None = Field(default=None, max_length=64)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class WorkerConfig(BaseModel):
    heartbeat_interval_secs: Secs
    lease_ttl_secs: Secs


class Registered(BaseModel):
    worker_id: str
    worker_token: str
    config: WorkerConfig


class WorkerHeartbeat(Strict):
    status: str | None = Field(default=None, max_length=32)
    version: str | None = Field(default=None, max_length=64)
    running_jobs: int | None = Field(default=None, ge=0, le=100_000)
    resource_usage: dict[str, JsonValue] | None = None


class WorkerHeartbeatReply(BaseModel):
    drain: bool
    worker_id: str | None = None


class Deleted(BaseModel):
    deleted: bool = True
    leases_released: int = 0


class WorkerList(BaseModel):
    workers: list[Worker]


class TokenRequest(Strict):
    role: Literal["admin", "submitter", "viewer", "metrics"]
    name: str = Field(min_length=1, max_length=128)
    queues: list[QueueName] | None = Field(
        default=None, min_length=1, max_length=1000,
        description="the only queues the token may act in (default: every queue)")


class TokenIssued(BaseModel):
    id: str
    token: str = Field(description="shown once; only its SHA-256 is stored")
    role: str


class RegistrationTokenRequest(Strict):
    ttl_secs: float = Field(default=3600, gt=0, le=86400)
    uses: int = Field(default=1, ge=1, le=10_000)
    queues: list[QueueName] | None = Field(
        default=None, min_length=1, max_length=1000,
        description="the only queues the workers it registers may act in (default: every queue)")


class RegistrationTokenIssued(BaseModel):
    id: str
    token: str
    expires_at_ms: int


class Health(BaseModel):
    status: str
