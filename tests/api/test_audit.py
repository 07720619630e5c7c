"""The audit trail: each administrative action logs exactly one ``audit`` line naming the action,
its target, the actor by token id and role, and the peer; no token ever appears in it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from leasehold.api.server import audit
from tests.api.harness import ADMIN, Api


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event; the audit logger is a fresh lazy proxy, so one cached under an
    earlier configuration cannot bypass the capture."""
    monkeypatch.setattr(audit, "log", structlog.get_logger("leasehold.audit"))
    with capture_logs() as entries:
        yield entries


def _audit(entries: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in entries if entry.get("event") == "audit"]


async def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status == status, reply.text
    return reply.body


async def test_each_action_logs_one_audit_line_without_tokens(
        api: Api, log_lines: list[MutableMapping[str, Any]]) -> None:
    api_token_id, api_token = await api.api_token("submitter", "ci")
    submitter = api.as_(api_token)
    scratch_id = (await _ok(await api.post("/api/tokens", {"role": "viewer", "name": "x"}), 201))[
        "id"]
    await _ok(await api.delete(f"/api/tokens/{scratch_id}"))
    registration = await api.registration_token()
    worker = await _ok(await api.post("/api/workers/register", {"worker_id": "w-aud"},
                                      token=registration), 201)
    await _ok(await api.call("PATCH", "/api/workers/w-aud", {"labels": ["gpu"]}))
    await _ok(await api.post("/api/workers/w-aud/drain"))
    await _ok(await api.post("/api/workers/w-aud/undrain"))
    await _ok(await api.delete("/api/workers/w-aud"))
    await _ok(await api.put("/api/queues/aud", {"paused": True}))
    job = await api.submit(command="x", queue="aud2")
    await _ok(await submitter.post(f"/api/jobs/{job['id']}/cancel"), 202)
    await _ok(await api.post(f"/api/jobs/{job['id']}/retry"), 202)
    flow = await _ok(await api.post("/api/workflows", {
        "name": "aud", "jobs": [{"id": "a", "command": "true", "depends_on": []}]}), 201)
    await _ok(await api.post(f"/api/workflows/{flow['id']}/run"), 202)
    await _ok(await api.delete(f"/api/workflows/{flow['id']}"))

    lines = _audit(log_lines)
    assert Counter(line["action"] for line in lines) == Counter({
        "token.create": 2, "token.delete": 1, "registration_token.create": 1,
        "worker.register": 1, "worker.patch": 1, "worker.drain": 1, "worker.undrain": 1,
        "worker.revoke": 1, "queue.update": 1, "job.cancel": 1, "job.retry": 1,
        "workflow.create": 1, "workflow.run": 1, "workflow.delete": 1})
    by_action = {line["action"]: line for line in lines}
    assert by_action["job.cancel"]["actor"]["token_id"] == api_token_id
    assert by_action["job.cancel"]["actor"]["role"] == "submitter"
    assert by_action["job.cancel"]["job_id"] == job["id"]
    assert by_action["job.retry"]["actor"]["role"] == "admin"
    assert by_action["worker.register"]["actor"]["role"] == "registration"
    assert by_action["worker.revoke"]["worker_id"] == "w-aud"
    assert by_action["token.delete"]["token_id"] == scratch_id
    assert by_action["queue.update"]["queue"] == "aud"
    assert by_action["workflow.delete"]["workflow_id"] == flow["id"]
    for line in lines:
        assert line["peer"] == "127.0.0.1", line
    text = orjson.dumps(lines).decode()
    for secret in (ADMIN, api_token, registration, worker["worker_token"]):
        assert secret not in text
