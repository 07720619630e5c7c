"""One hierarchy of domain errors; the API maps each ``code`` to an HTTP status in one place."""

from __future__ import annotations

from redis.exceptions import OutOfMemoryError, RedisError

# What a lost or refusing backend raises; the API answers 503 + Retry-After for these.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, ConnectionError, TimeoutError)


def backend_message(exc: BaseException) -> str:
    """A safe text for a backend error: whether Redis is out of memory or unreachable."""
    # redis-py strips the "OOM" code from the text of the OutOfMemoryError it raises
    if isinstance(exc, OutOfMemoryError) or "OOM" in str(exc):
        return "Redis is out of memory; nothing was written, retry later"
    return "Redis is unavailable; retry later"


class SchedulerError(Exception):
    """Base of every error the scheduler raises on purpose."""

    code = "scheduler_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidArgument(SchedulerError):
    code = "invalid_argument"


class NotFound(SchedulerError):
    """An unknown id (404)."""

    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class WorkerNotFound(NotFound):
    code = "worker_not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class InvalidState(SchedulerError):
    """The job is in a status that does not allow the operation (retry of a running job, ...)."""

    code = "invalid_state"


class JobAlreadyExists(SchedulerError):
    code = "job_exists"


class LeaseLost(SchedulerError):
    """The lease can no longer act on its job; ``code`` says why (the 409 codes)."""

    code = "lease_lost"


class LeaseExpired(LeaseLost):
    code = "lease_expired"


class LeaseNotFound(LeaseLost):
    code = "lease_not_found"


class LeaseSuperseded(LeaseLost):
    code = "lease_superseded"


class JobCancelled(LeaseLost):
    code = "job_cancelled"


class JobFinished(LeaseLost):
    code = "job_finished"


class NotLeaseOwner(SchedulerError):
    """A worker called with a lease that another worker holds."""

    code = "not_lease_owner"


class Conflict(SchedulerError):
    """A name or state conflict (a worker id held by another live worker, an active run...)."""

    code = "conflict"


class Unauthorized(SchedulerError):
    """No valid credential: unknown, expired, used-up or revoked token."""

    code = "unauthorized"


class Forbidden(SchedulerError):
    """A valid credential whose role does not allow the operation."""

    code = "forbidden"


class QueueForbidden(Forbidden):
    """A token limited to some queues acted on another queue."""

    code = "queue_forbidden"


class RateLimited(SchedulerError):
    """The queue's submit_rate has no room in the current window; ``retry_at_ms`` says when."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_secs: int = 1, **details: object) -> None:
        super().__init__(message, retry_after_secs=retry_after_secs, **details)
        self.retry_after_secs = retry_after_secs


class LabelsNotRegistered(Forbidden):
    """A worker token claimed with labels its worker was not registered with."""

    code = "labels_not_registered"


class ScriptContractError(SchedulerError):
    """A script replied with a shape the wrapper does not know: a bug, never user error."""

    code = "internal_error"
