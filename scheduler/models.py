"""Typed shapes of jobs, leases and policies in their wire form (seconds, workflow-graph names)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.rawjson import EMPTY_OBJECT, RawJson, RawObject

QueueName = Annotated[str, Field(pattern=QUEUE_NAME.pattern, examples=["default"])]
Label = Annotated[str, Field(min_length=1, max_length=128)]
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["deploy-key"])]
MAX_SECS = 366 * 86400
# Scripts do arithmetic on times as Lua doubles and Redis stores them with %.17g: past 1e17
# a time would come back in exponent notation. 1e15 ms is well past any real schedule.
MAX_TIME_MS = 10**15


def _whole(value: int | float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A duration in seconds that goes on the wire: a JSON integer when whole (``30``, never ``30.0``).
Secs = Annotated[int | float, AfterValidator(_whole)]
# Payloads, metadata and outputs keep the exact JSON text the caller sent (see rawjson).
RAW_FIELDS = frozenset({"payload", "metadata", "outputs", "upstream_outputs"})


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixedParams(Strict):
    delay_secs: Secs = Field(ge=0, le=MAX_SECS)


class ExponentialParams(Strict):
    base_secs: Secs = Field(gt=0, le=MAX_SECS)
    max_secs: Secs = Field(gt=0, le=MAX_SECS, description="the longest wait: retry r waits "
                           "min(base_secs * 2^(r-1), max_secs), so a cap below base_secs is "
                           "every wait")


class FixedBackoff(Strict):
    Fixed: FixedParams


class ExponentialBackoff(Strict):
    Exponential: ExponentialParams


Backoff = Literal["None"] | FixedBackoff | ExponentialBackoff


class RetryPolicy(Strict):
    """How many times a job is retried and how long each retry waits."""

    max_retries: int = Field(default=0, ge=0, le=1000)
    backoff: Backoff = "None"
    jitter: float = Field(default=0.0, ge=0, le=1, description="Fraction of the delay to randomize")


class Verification(Strict):
    """A quorum: the job succeeds once ``count`` distinct workers report the same value."""

    count: int = Field(ge=1, le=100, description="distinct workers that must agree")
    max_votes: int | None = Field(
        default=None, ge=1, le=1000,
        description="completions after which a job without quorum fails (default 2*count+1; "
        "a value below count counts as count)")

    @property
    def vote_cap(self) -> int:
        return max(self.max_votes, self.count) if self.max_votes is not None else 2 * self.count + 1


def _not_both(first: str, second: str, first_type: str, second_type: str) -> dict[str, Any]:
    """A schema rule: ``first`` and ``second`` are not both given (null is not given)."""
    return {"not": {"required": [first, second], "properties": {
        first: {"type": first_type}, second: {"type": second_type}}}}


ONE_START_TIME = _not_both("run_at_ms", "delay_secs", "integer", "number")


class JobSpec(Strict):
    """What a producer submits. Server-owned fields (status, attempt, ...) are refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_START_TIME)
    raw_json_fields: ClassVar[frozenset[str]] = RAW_FIELDS

    queue: QueueName = "default"
    command: str | None = Field(default=None, max_length=1_000_000)
    payload: RawJson | None = Field(default=None, description="any JSON, kept byte for byte")
    required_labels: list[Label] = Field(default_factory=list, max_length=64)
    priority: int = Field(default=100, ge=0, le=1000, description="Lower is claimed first")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    lease_ttl_secs: float | None = Field(default=None, gt=0, le=86400)
    timeout_secs: float | None = Field(default=None, gt=0, le=MAX_SECS)
    run_at_ms: int | None = Field(default=None, ge=0, le=MAX_TIME_MS)
    delay_secs: float | None = Field(default=None, ge=0, le=MAX_SECS)
    unique_key: str | None = Field(default=None, min_length=1, max_length=512)
    unique_ttl_secs: float = Field(default=0, ge=0, le=MAX_SECS)
    result_ttl_secs: float | None = Field(default=None, gt=0, le=MAX_SECS)
    metadata: RawObject = Field(default_factory=lambda: RawObject(EMPTY_OBJECT),
                                description="a JSON object, kept byte for byte")
    verification: Verification | None = None
    secrets: list[SecretName] = Field(
        default_factory=list, max_length=32,
        description="secrets the lease holder's claim reply carries (never a job read)")

    @model_validator(mode="after")
    def _one_start_time(self) -> JobSpec:
        if self.run_at_ms is not None and self.delay_secs is not None:
            raise ValueError("give run_at_ms or delay_secs, not both")
        return self


class RunnableJobSpec(JobSpec):
    """A job submitted to run now: it needs a ``command``, a ``payload``, or both."""

    # a command, else a payload (if/else: a client generator reads one object with every field)
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        **ONE_START_TIME,
        "if": {"required": ["command"], "properties": {"command": {"type": "string"}}},
        "else": {"required": ["payload"], "properties": {"payload": {"not": {"type": "null"}}}}})


class WebhookDelivery(BaseModel):
    """One attempt to POST a finished job to its webhook."""

    attempt: int
    status_code: int | None = None
    error: str | None = None
    at_ms: int


class Job(BaseModel):
    """A job as stored, returned by reads and claims."""

    id: str
    job_id: str
    workflow_id: str | None = None
    queue: str
    command: str | None = None
    payload: RawJson | None = None
    required_labels: list[str] = Field(default_factory=list)
    priority: int = 100
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    lease_ttl_secs: Secs | None = None
    timeout_secs: Secs | None = None
    unique_key: str | None = None
    metadata: RawObject = Field(default_factory=lambda: RawObject(EMPTY_OBJECT))
    verification: Verification | None = None
    status: JobStatus
    attempt: int = 0
    outputs: RawObject | None = None
    upstream_outputs: RawObject = Field(
        default_factory=lambda: RawObject(EMPTY_OBJECT),
        description="{dependency job name: its outputs} of a workflow job's direct dependencies")
    error: str | None = None
    progress: int | None = None
    progress_message: str | None = None
    worker_id: str | None = None
    enqueued_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    delayed_until_ms: int = 0
    secrets: list[str] | None = Field(
        default=None, description="names of the secrets its claim carries (never their values)")
    webhook_deliveries: list[WebhookDelivery] | None = Field(
        default=None, description="each webhook delivery attempt of a job submitted with "
        "result mode webhook (null for other jobs)")


class Lease(BaseModel):
    """The right to act on one job until ``expires_at_ms``; ``lease_id`` is the fencing token."""

    lease_id: str
    job_id: str
    workflow_id: str | None = None
    worker_id: str
    ttl_secs: Secs
    granted_at_ms: int
    expires_at_ms: int
    attempt: int


class Claim(BaseModel):
    job: Job
    lease: Lease
    secrets: dict[str, JsonValue] | None = Field(
        default=None, description="name -> value of the secrets the job names (null if none); "
        "only the lease holder's claim reply carries them")


class Heartbeat(BaseModel):
    lease: Lease
    cancelled: bool


class FailOutcome(BaseModel):
    will_retry: bool
    retry_at_ms: int | None = None
    run_ms: int = 0
    replayed: bool = False  # the same lease already failed the job: this is that reply again


class Finished(BaseModel):
    """A completion: the attempt's run time, and whether it only repeats an earlier reply."""

    run_ms: int
    replayed: bool = False


class Submitted(BaseModel):
    job: Job
    deduplicated: bool


class ReapReport(BaseModel):
    expired: int = 0
    promoted: int = 0
    purged: int = 0
    workers_offline: int = 0

    def add(self, other: ReapReport) -> None:
        self.expired += other.expired
        self.promoted += other.promoted
        self.purged += other.purged


class QueueLimits(Strict):
    """Settings of one queue an operator may change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_both(
        "rate_limit", "claim_rate", "object", "object"))

    paused: bool | None = None
    max_running: int | None = Field(default=None, ge=0, le=1_000_000)
    rate_limit: RateLimit | None = Field(default=None, description="the same as claim_rate")
    claim_rate: RateLimit | None = Field(default=None, description="claims per window")
    submit_rate: RateLimit | None = Field(
        default=None, description="submitted jobs per window; past it 429 rate_limited")

    @model_validator(mode="after")
    def _one_claim_rate(self) -> QueueLimits:
        if self.rate_limit is not None and self.claim_rate is not None:
            raise ValueError("give claim_rate or rate_limit (its alias), not both")
        return self


class RateLimit(Strict):
    limit: int = Field(ge=0, le=1_000_000, description="0 removes the limit")
    per_secs: Secs = Field(gt=0, le=86400)


QueueLimits.model_rebuild()


class QueueStats(BaseModel):
    queue: str
    ready: int
    scheduled: int
    waiting_deps: int
    running: int
    failure: int
    success: int
    cancelled: int
    paused: bool
    max_running: int | None
    rate_limit: RateLimit | None
    claim_rate: RateLimit | None = None
    submit_rate: RateLimit | None = None
    oldest_ready_age_secs: Secs | None
    counters: dict[str, int]


# Fields of a state-transition event that are integers on the wire, as in the job object.
EVENT_INTEGERS = ("attempt", "t")


def typed_event(fields: dict[str, str]) -> dict[str, str | int]:
    """A state transition as stored (every value a string) with its integers as integers."""
    typed: dict[str, str | int] = dict(fields)
    for name in EVENT_INTEGERS:
        value = fields.get(name)
        if value is not None and value.lstrip("-").isdigit():
            typed[name] = int(value)
    return typed


def any_json(value: Any) -> JsonValue:
    """Narrows a decoded JSON document to pydantic's JsonValue for typing."""
    return value  # type: ignore[no-any-return]


class WorkerStatus(StrEnum):
    """A worker's status on the wire: idle or busy (it holds a lease) while online, draining,
    offline. ``online`` is what the record stores for both idle and busy, and a list filter."""

    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    OFFLINE = "offline"
    ONLINE = "online"


class Worker(BaseModel):
    """A registered agent as the registry sees it."""

    worker_id: str
    name: str
    labels: list[str] = Field(default_factory=list)
    version: str | None = None
    status: WorkerStatus
    current_job: str | None = Field(default=None, description="id of a job it holds, or null")
    registered_at_ms: int
    last_heartbeat_ms: int
    running_jobs: int = Field(default=0, description="leases it holds")
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    resource_usage: dict[str, JsonValue] = Field(default_factory=dict)
