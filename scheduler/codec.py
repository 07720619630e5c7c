"""Converts between typed models and the flat string fields of a job hash (ms in Redis)."""

from __future__ import annotations

from typing import Any

import orjson

from leasehold.scheduler.errors import InvalidArgument
from leasehold.scheduler.models import (
    Backoff,
    ExponentialBackoff,
    ExponentialParams,
    FixedBackoff,
    FixedParams,
    Job,
    JobSpec,
    JobStatus,
    Lease,
    RetryPolicy,
    Verification,
)
from leasehold.scheduler.rawjson import EMPTY_OBJECT, RawJson, RawObject, encode


def ms(secs: float) -> int:
    """Seconds as whole milliseconds; a positive duration never rounds down to 0 (no lease or
    backoff of 5e-324 s becomes "none" or fails to read back)."""
    value = round(secs * 1000)
    return max(value, 1) if secs > 0 else value


def secs(value_ms: int) -> int | float:
    """Milliseconds as seconds: a JSON integer when whole (``30``, never ``30.0``)."""
    whole, rest = divmod(value_ms, 1000)
    return whole if rest == 0 else value_ms / 1000


def dumps(value: Any) -> str:
    """Compact JSON of a Python value; a RawJson inside is embedded as its own text."""
    try:
        return encode(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def backoff_fields(policy: RetryPolicy) -> dict[str, str]:
    kind, base_ms, max_ms = "none", 0, 0
    if isinstance(policy.backoff, FixedBackoff):
        kind, base_ms = "fixed", ms(policy.backoff.Fixed.delay_secs)
    elif isinstance(policy.backoff, ExponentialBackoff):
        params = policy.backoff.Exponential
        kind, base_ms, max_ms = "exponential", ms(params.base_secs), ms(params.max_secs)
    return {
        "max_retries": str(policy.max_retries),
        "backoff_kind": kind,
        "backoff_base_ms": str(base_ms),
        "backoff_max_ms": str(max_ms),
        "jitter": repr(policy.jitter),
    }


def spec_fields(spec: JobSpec, job_id: str, default_result_ttl_ms: int) -> dict[str, str]:
    """The stored fields of a new job besides those the enqueue script sets itself."""
    fields = {
        "job_id": job_id,
        "queue": spec.queue,
        "lease_ttl_ms": str(ms(spec.lease_ttl_secs)) if spec.lease_ttl_secs else "",
        "timeout_ms": str(ms(spec.timeout_secs)) if spec.timeout_secs else "0",
        "unique_ttl_ms": str(ms(spec.unique_ttl_secs)),
        "result_ttl_ms": str(
            ms(spec.result_ttl_secs) if spec.result_ttl_secs else default_result_ttl_ms
        ),
        "metadata": spec.metadata.text,
        **backoff_fields(spec.retry_policy),
    }
    if spec.command is not None:
        fields["command"] = spec.command
    if spec.payload is not None:
        fields["payload"] = spec.payload.text
    return fields


def _backoff(record: dict[str, str]) -> Backoff:
    kind = record.get("backoff_kind", "none")
    base = secs(int(record.get("backoff_base_ms", "0")))
    if kind == "fixed":
        return FixedBackoff(Fixed=FixedParams(delay_secs=base))
    if kind == "exponential":
        cap = secs(int(record.get("backoff_max_ms", "0")))
        return ExponentialBackoff(Exponential=ExponentialParams(base_secs=base, max_secs=cap))
    return "None"


def _int(record: dict[str, str], field: str) -> int | None:
    value = record.get(field, "")
    return int(value) if value else None


def _json(record: dict[str, str], field: str) -> Any:
    value = record.get(field, "")
    return orjson.loads(value) if value else None


def _raw(record: dict[str, str], field: str) -> RawJson | None:
    """A stored JSON value as its text: never decoded, so served exactly as it was sent."""
    value = record.get(field, "")
    return RawJson(value) if value else None


def _raw_object(record: dict[str, str], field: str) -> RawObject:
    return RawObject(record.get(field) or EMPTY_OBJECT)


def job_from_record(record: dict[str, str]) -> Job:
    """A Job from a job hash as HGETALL returns it."""
    lease_ttl = _int(record, "lease_ttl_ms")
    timeout = _int(record, "timeout_ms")
    return Job(
        id=record["id"],
        job_id=record.get("job_id") or record["id"],
        workflow_id=record.get("workflow_id") or None,
        queue=record["queue"],
        command=record.get("command"),
        payload=_raw(record, "payload"),
        required_labels=_json(record, "labels") or [],
        priority=int(record["priority"]),
        retry_policy=RetryPolicy(
            max_retries=int(record.get("max_retries", "0")),
            backoff=_backoff(record),
            jitter=float(record.get("jitter", "0")),
        ),
        lease_ttl_secs=secs(lease_ttl) if lease_ttl else None,
        timeout_secs=secs(timeout) if timeout else None,
        unique_key=record.get("unique_key") or None,
        metadata=_raw_object(record, "metadata"),
        verification=Verification(count=int(record["verify_count"]),
                                  max_votes=_int(record, "verify_max_votes"))
        if record.get("verify_count") else None,
        status=JobStatus(record["status"]),
        attempt=int(record.get("attempt", "0")),
        outputs=RawObject(record["outputs"]) if record.get("outputs") else None,
        upstream_outputs=_raw_object(record, "upstream_outputs"),
        error=record.get("error") or None,
        progress=_int(record, "progress"),
        progress_message=record.get("progress_message") or None,
        worker_id=record.get("worker_id") or None,
        enqueued_at_ms=int(record["enqueued_at_ms"]),
        started_at_ms=_int(record, "started_at_ms"),
        finished_at_ms=_int(record, "finished_at_ms"),
        delayed_until_ms=_int(record, "delayed_until_ms") or 0,
        secrets=sorted(_json(record, "secrets")) if record.get("secrets") else None,
        webhook_deliveries=(_json(record, "webhook_deliveries") or [])
        if record.get("webhook_url") else None,
    )


def lease_from_record(record: dict[str, str]) -> Lease:
    """The current lease of a job hash that a claim just wrote."""
    return Lease(
        lease_id=record["lease_id"],
        job_id=record.get("job_id") or record["id"],
        workflow_id=record.get("workflow_id") or None,
        worker_id=record["worker_id"],
        ttl_secs=secs(int(record["lease_ttl_cur_ms"])),
        granted_at_ms=int(record["lease_granted_at_ms"]),
        expires_at_ms=int(record["lease_expires_at_ms"]),
        attempt=int(record.get("attempt", "0")),
    )


def pairs(flat: list[str]) -> dict[str, str]:
    """A dict from a flat [field, value, ...] reply (HGETALL inside a script)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
