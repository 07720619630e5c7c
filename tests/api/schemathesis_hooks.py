"""schemathesis hooks (SCHEMATHESIS_HOOKS): realistic values where the document states a rule in
words that JSON Schema cannot carry.

Only schema-valid (positive) cases are touched, so negative cases still probe every refusal:
- a workflow's graph: the server refuses a duplicate job id, an unknown dependency, a cycle and a
  job naming another queue than its workflow's (said in the body's description); a generated
  graph keeps only dependencies on earlier jobs, and its jobs the workflow's queue;
- a bulk submit: its jobs share one queue (said in the ``jobs`` description);
- a webhook URL: its host must resolve to an address the server may call (a generated host does
  not resolve), so it becomes a loopback URL (the service runs with private webhooks allowed).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation.modes import GenerationMode

HOOK_URL = "http://127.0.0.1:9/hook"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if not isinstance(case.body, dict):
        return case
    route = (case.operation.method.upper(), case.operation.path)
    if route == ("POST", "/api/workflows"):
        _acyclic(case.body)
    if route == ("POST", "/api/jobs/bulk"):
        _one_queue(case.body)
    _local_webhooks(case.body)
    return case


def _acyclic(body: dict[str, Any]) -> None:
    jobs = body.get("jobs")
    if isinstance(jobs, list):
        seen: list[str] = []
        kept = []
        for job in jobs:
            if not isinstance(job, dict) or job.get("id") in seen:
                continue
            job["depends_on"] = [dep for dep in job.get("depends_on", []) if dep in seen]
            job["queue"] = None
            seen.append(job.get("id", ""))
            kept.append(job)
        body["jobs"] = kept
    elif isinstance(jobs, dict):
        earlier: list[str] = []
        for name, job in jobs.items():
            if isinstance(job, dict):
                needs = job.get("needs", [])
                needs = [needs] if isinstance(needs, str) else needs
                job["needs"] = [dep for dep in needs if dep in earlier]
                job.pop("queue", None)
            earlier.append(name)


def _one_queue(body: dict[str, Any]) -> None:
    jobs = [job for job in body.get("jobs", []) if isinstance(job, dict)]
    if jobs:
        queue = jobs[0].get("queue", "default")
        for job in jobs:
            job["queue"] = queue


def _local_webhooks(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "webhook" and isinstance(item, dict) and "url" in item:
                item["url"] = HOOK_URL
            else:
                _local_webhooks(item)
    elif isinstance(value, list):
        for item in value:
            _local_webhooks(item)
