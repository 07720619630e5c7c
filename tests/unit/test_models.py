"""What a producer may submit: JobSpec and RetryPolicy validation at the edge."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from leasehold.scheduler import codec
from leasehold.scheduler.models import (
    RAW_FIELDS,
    ExponentialBackoff,
    FixedBackoff,
    Job,
    JobSpec,
    JobStatus,
    QueueLimits,
    RetryPolicy,
)
from leasehold.scheduler.rawjson import RawJson, RawObject, fragment, loads_keeping


def spec(**fields: Any) -> JobSpec:
    return JobSpec.model_validate(fields)


def refused(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(fields)
    return str(info.value)


@pytest.mark.parametrize("field", [
    "status", "attempt", "id", "outputs", "error", "started_at_ms", "lease_id", "progress",
])
def test_server_owned_fields_are_refused(field: str) -> None:
    assert field in refused(**{field: "queued" if field == "status" else 1})


def test_unknown_fields_are_refused_in_nested_policies_too() -> None:
    refused(retry_policy={"max_retries": 1, "retries": 2})
    refused(retry_policy={"backoff": {"Fixed": {"delay_secs": 1, "extra": 1}}})


@pytest.mark.parametrize("priority", [0, 1, 100, 1000])
def test_priority_accepts_0_to_1000(priority: int) -> None:
    assert spec(priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-1, 1001, 1.5, "high"])
def test_priority_outside_0_to_1000_is_refused(priority: object) -> None:
    refused(priority=priority)


@pytest.mark.parametrize("queue", ["default", "a", "A-b_c.9", "x" * 64])
def test_queue_names_allowed(queue: str) -> None:
    assert spec(queue=queue).queue == queue


@pytest.mark.parametrize("queue", ["", "x" * 65, "has space", "a/b", "{tag}", "q:1", "é"])
def test_bad_queue_names_are_refused(queue: str) -> None:
    assert "queue" in refused(queue=queue)


def test_backoff_none_is_the_default_and_may_be_spelled_out() -> None:
    assert spec().retry_policy.backoff == "None"
    assert spec(retry_policy={"backoff": "None"}).retry_policy.backoff == "None"


def test_fixed_and_exponential_backoff_shapes() -> None:
    fixed = spec(retry_policy={"max_retries": 2, "backoff": {"Fixed": {"delay_secs": 3}}})
    assert isinstance(fixed.retry_policy.backoff, FixedBackoff)
    assert fixed.retry_policy.backoff.Fixed.delay_secs == 3
    exp = spec(retry_policy={"backoff": {"Exponential": {"base_secs": 1, "max_secs": 1}}})
    assert isinstance(exp.retry_policy.backoff, ExponentialBackoff)
    assert exp.retry_policy.backoff.Exponential.max_secs == 1


@pytest.mark.parametrize("backoff", [
    "none", "Fixed", {}, {"Fixed": {}}, {"Fixed": {"delay_secs": -1}},
    {"Exponential": {"base_secs": 0, "max_secs": 5}},
    {"Exponential": {"base_secs": 1}},
    {"Fixed": {"delay_secs": 1}, "Exponential": {"base_secs": 1, "max_secs": 2}},
    {"Linear": {"delay_secs": 1}},
])
def test_malformed_backoff_is_refused(backoff: object) -> None:
    refused(retry_policy={"backoff": backoff})


def test_exponential_cap_below_base_is_every_wait() -> None:
    """Any schema-valid pair is accepted: the cap wins (tests/integration/test_retry.py)."""
    exp = spec(retry_policy={"backoff": {"Exponential": {"base_secs": 10, "max_secs": 5}}})
    assert isinstance(exp.retry_policy.backoff, ExponentialBackoff)


def test_both_start_times_are_refused_and_the_schema_says_so() -> None:
    assert "run_at_ms or delay_secs" in refused(run_at_ms=1, delay_secs=1)
    assert JobSpec.model_json_schema()["not"]["required"] == ["run_at_ms", "delay_secs"]
    spec(run_at_ms=1, delay_secs=None)


@pytest.mark.parametrize("policy", [
    {"max_retries": -1}, {"max_retries": 1001}, {"jitter": -0.1}, {"jitter": 1.01},
])
def test_retry_policy_bounds(policy: dict[str, Any]) -> None:
    refused(retry_policy=policy)
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(policy)


def test_run_at_and_delay_together_are_refused() -> None:
    assert "run_at_ms" in refused(run_at_ms=1_700_000_000_000, delay_secs=5)
    assert spec(run_at_ms=1_700_000_000_000).delay_secs is None
    assert spec(delay_secs=0).run_at_ms is None


@pytest.mark.parametrize("fields", [
    {"lease_ttl_secs": 0}, {"lease_ttl_secs": 86_401}, {"timeout_secs": 0},
    {"delay_secs": -1}, {"run_at_ms": -1}, {"unique_key": ""}, {"unique_ttl_secs": -1},
    {"result_ttl_secs": 0}, {"required_labels": [""]}, {"required_labels": ["x"] * 65},
    {"metadata": []}, {"command": 5},
])
def test_out_of_range_fields_are_refused(fields: dict[str, Any]) -> None:
    refused(**fields)


def test_payload_takes_any_json() -> None:
    for payload in (None, 1, "s", [1, {"a": None}], {"deep": {"x": [True]}}):
        assert spec(payload=payload).payload == payload


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.terminal} == {
        JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELLED, JobStatus.SKIPPED}


def test_queue_limits_refuse_unknown_and_negative_settings() -> None:
    assert QueueLimits.model_validate({"rate_limit": {"limit": 5, "per_secs": 1}}).rate_limit
    for bad in ({"max_running": -1}, {"rate_limit": {"limit": 1, "per_secs": 0}},
                {"rate_limit": {"limit": -1, "per_secs": 1}}, {"pause": True}):
        with pytest.raises(ValidationError):
            QueueLimits.model_validate(bad)


RAW = '{"n": 123456789012345678901234567890, "f": 1.10, "z": -0.0, "e": 1e400, "l": [], "o": {}}'


def test_raw_members_keep_their_exact_text() -> None:
    body = f'{{"command": "x", "payload": [ {RAW} ], "metadata": {RAW}}}'
    job = JobSpec.model_validate(loads_keeping(body, RAW_FIELDS))
    assert job.payload is not None
    assert (job.payload.text, job.metadata.text) == (f"[ {RAW} ]", RAW)
    reply = orjson.dumps(job.model_dump(), default=fragment).decode()
    assert f'"payload":[ {RAW} ]' in reply and f'"metadata":{RAW}' in reply


def test_raw_values_decode_on_demand_with_exact_integers() -> None:
    raw = RawObject(RAW)
    assert raw["n"] == 123456789012345678901234567890
    assert raw == {"n": 123456789012345678901234567890, "f": 1.1, "z": -0.0,
                   "e": float("inf"), "l": [], "o": {}}
    assert RawJson.of({"big": 2**70, "l": []}).text == '{"big":1180591620717411303424,"l":[]}'


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": 1,}', '{"a": [1 2]}', '{"a": 1} x', "{"])
def test_text_that_is_not_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads_keeping(f'{{"payload": {text}}}', RAW_FIELDS)


def test_metadata_and_outputs_must_be_objects() -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(loads_keeping('{"metadata": [1]}', RAW_FIELDS))
    with pytest.raises(ValidationError):
        Job.model_validate({"id": "q.x", "job_id": "q.x", "queue": "q", "status": "success",
                            "enqueued_at_ms": 1, "outputs": RawJson("[]")})


def test_whole_durations_are_integers_on_the_wire() -> None:
    policy = RetryPolicy.model_validate({"backoff": {"Exponential": {"base_secs": 2.0,
                                                                     "max_secs": 2.5}}})
    assert policy.model_dump_json() == (
        '{"max_retries":0,"backoff":{"Exponential":{"base_secs":2,"max_secs":2.5}},"jitter":0.0}')
    assert (codec.secs(30_000), codec.secs(1_500)) == (30, 1.5)
    assert isinstance(codec.secs(30_000), int)
