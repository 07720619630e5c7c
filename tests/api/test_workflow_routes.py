"""Workflow routes over HTTP with auth off (a seed 003 client): create, list, status, run, cancel,
history, the cancelled check, job logs, the sample's single-worker run, and WORKFLOWS_DIR."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.service import open_services
from tests.api.harness import Api

YAML = {"Content-Type": "application/yaml"}

API_SHAPE = {
    "name": "build and test", "trigger": "push",
    "jobs": [
        {"id": "compile", "command": "make", "required_labels": ["linux"], "max_retries": 2,
         "metadata": {"team": "core"}},
        {"id": "test", "name": "Unit tests", "command": "make test", "depends_on": ["compile"]},
    ],
}

SEED_YAML = """\
name: Seed pipeline
on: push
env:
  CI: "true"
jobs:
  fetch:
    run: git fetch
  build:
    needs: fetch
    labels: [linux]
    retries: 1
    steps:
      - name: compile
        run: make
"""

SEED_STATUS_JOB_FIELDS = {"id", "name", "status", "command", "depends_on", "duration_secs",
                          "started_at", "output", "required_labels", "max_retries", "attempt",
                          "metadata"}


async def create(api: Api, body: Any = None, *, yaml: str | None = None) -> dict[str, Any]:
    if yaml is not None:
        reply = await api.post("/api/workflows", data=yaml, headers=YAML)
    else:
        reply = await api.post("/api/workflows", API_SHAPE if body is None else body)
    assert reply.status == 201, reply.text
    assert isinstance(reply.body, dict)
    return reply.body


async def job_statuses(api: Api, wf: str) -> dict[str, str]:
    reply = await api.get(f"/api/workflows/{wf}/status")
    assert reply.status == 200, reply.text
    return {job["id"]: job["status"] for job in reply.body["jobs"]}


# -- create ----------------------------------------------------------------------------------------

async def test_create_from_the_json_api_shape(open_api: Api) -> None:
    body = await create(open_api)
    assert body["name"] == "build and test" and body["trigger"] == "push"
    assert body["queue"] == "default" and body["run_id"] is None
    compile_, test = body["jobs"]
    assert set(compile_) >= SEED_STATUS_JOB_FIELDS
    assert (compile_["id"], compile_["name"], compile_["command"]) == ("compile", "compile", "make")
    assert (compile_["required_labels"], compile_["max_retries"]) == (["linux"], 2)
    assert compile_["metadata"] == {"team": "core"}
    assert (test["name"], test["depends_on"], test["status"]) == ("Unit tests", ["compile"],
                                                                  "queued")


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml",
                                          "text/yaml"])
async def test_create_from_seed_003_yaml(open_api: Api, content_type: str) -> None:
    reply = await open_api.post("/api/workflows", data=SEED_YAML,
                                headers={"Content-Type": content_type})
    assert reply.status == 201, reply.text
    body = reply.body
    assert (body["name"], body["trigger"]) == ("Seed pipeline", "push")
    fetch, build = body["jobs"]
    assert fetch["command"] == "export CI=true && git fetch"
    assert build["depends_on"] == ["fetch"] and build["required_labels"] == ["linux"]
    assert build["max_retries"] == 1 and "=== compile ===" in build["command"]


async def test_create_from_seed_003_json_definition(open_api: Api) -> None:
    document = {"name": "json seed", "on": ["push"], "jobs": {
        "a": {"run": "echo a"}, "b": {"needs": "a", "run": "echo b", "labels": ["x"]}}}
    body = await create(open_api, document)
    assert body["trigger"] == ["push"]
    assert [(j["id"], j["depends_on"]) for j in body["jobs"]] == [("a", []), ("b", ["a"])]


async def test_seed_003_read_only_fields_are_ignored(open_api: Api) -> None:
    document = {"id": "client-made-id", "name": "echo", "jobs": [
        {"id": "a", "name": "A", "command": "echo", "depends_on": [], "status": "failure",
         "duration_secs": 3.0, "started_at": 1.0, "output": "old", "ports": [],
         "children": [], "collapsed": False, "attempt": 4}]}
    body = await create(open_api, document)
    assert body["id"] != "client-made-id"
    (job,) = body["jobs"]
    assert (job["status"], job["output"], job["attempt"], job["duration_secs"]) == (
        "queued", None, 0, None)


def _seed(jobs: str, top: str = "") -> str:
    return f"name: x\non: push\n{top}jobs:\n" + textwrap.indent(textwrap.dedent(jobs), "  ")


YAML_ERRORS = [
    ("malformed", "name: x\njobs: [\n", "malformed YAML: "),
    ("tab", "name: x\njobs:\n\ta: 1\n", "malformed YAML: "),
    ("unknown dependency", _seed("a:\n  needs: ghost\n  run: x\n"),
     "Job 'a' depends on 'ghost', which doesn't exist"),
    ("no run or steps", _seed("a:\n  name: A\n"), "Job 'a' must have either 'run' or 'steps'"),
    ("empty steps", _seed("a:\n  steps: []\n"), "Job 'a' must have either 'run' or 'steps'"),
    ("duplicate id", _seed("a:\n  run: x\na:\n  run: y\n"), "malformed YAML: duplicate key 'a'"),
    ("cycle", _seed("a:\n  needs: b\n  run: x\nb:\n  needs: a\n  run: y\n"),
     "dependency cycle: a -> b -> a"),
    ("self cycle", _seed("a:\n  needs: [a]\n  run: x\n"), "dependency cycle: a -> a"),
    ("queue", _seed("a:\n  queue: other\n  run: x\n", "queue: builds\n"),
     "Job 'a' names queue 'other', but a workflow lives in one queue ('builds')"),
    ("no name", "on: push\njobs: {}\n", "invalid workflow definition at name: Field required"),
    ("unknown field", _seed("a:\n  run: x\n  colour: red\n"),
     "invalid workflow definition at jobs.a.colour: Extra inputs are not permitted"),
    ("bad id", _seed("a b:\n  run: x\n"), "invalid workflow definition at jobs.a b.[key]: "),
    ("bad env name", _seed("a:\n  run: x\n", "env:\n  'A B': 1\n"),
     "invalid workflow definition at env.A B.[key]: "),
    ("negative retries", _seed("a:\n  run: x\n  retries: -1\n"),
     "invalid workflow definition at jobs.a.retries: "),
    ("not a mapping", "- a\n- b\n", "a workflow definition must be a mapping with name and jobs"),
    ("empty document", "", "a workflow definition must be a mapping with name and jobs"),
]


@pytest.mark.parametrize(("case", "text", "message"), YAML_ERRORS,
                         ids=[case for case, _, _ in YAML_ERRORS])
async def test_every_yaml_error_is_a_400_naming_the_problem(
        open_api: Api, case: str, text: str, message: str) -> None:
    reply = await open_api.post("/api/workflows", data=text, headers=YAML)
    assert reply.status == 400, reply.text
    assert reply.body["error"] == "invalid_argument"
    assert reply.body["message"].startswith(message), (case, reply.body["message"])
    assert (await open_api.get("/api/workflows")).body == []


JSON_ERRORS = [
    ("malformed", b'{"name": "x", "jobs": ', "malformed JSON: "),
    ("empty body", b"", "malformed JSON: "),
    ("duplicate id", orjson.dumps({"name": "x", "jobs": [
        {"id": "a", "command": "1"}, {"id": "a", "command": "2"}]}), "duplicate job id 'a'"),
    ("unknown dependency", orjson.dumps({"name": "x", "jobs": [
        {"id": "a", "command": "1", "depends_on": ["zz"]}]}),
     "Job 'a' depends on 'zz', which doesn't exist"),
    ("cycle", orjson.dumps({"name": "x", "jobs": [
        {"id": "a", "command": "1", "depends_on": ["c"]},
        {"id": "b", "command": "1", "depends_on": ["a"]},
        {"id": "c", "command": "1", "depends_on": ["b"]}]}),
     "dependency cycle: a -> c -> b -> a"),
    ("no command", orjson.dumps({"name": "x", "jobs": [{"id": "a"}]}),
     "invalid workflow definition at jobs.0.command: Field required"),
    ("queue", orjson.dumps({"name": "x", "queue": "q1", "jobs": [
        {"id": "a", "command": "1", "queue": "q2"}]}),
     "Job 'a' names queue 'q2', but a workflow lives in one queue ('q1')"),
]


@pytest.mark.parametrize(("case", "data", "message"), JSON_ERRORS,
                         ids=[case for case, _, _ in JSON_ERRORS])
async def test_every_json_error_is_a_400_naming_the_problem(
        open_api: Api, case: str, data: bytes, message: str) -> None:
    reply = await open_api.post("/api/workflows", data=data,
                                headers={"Content-Type": "application/json"})
    assert reply.status == 400, reply.text
    assert reply.body["message"].startswith(message), (case, reply.body["message"])


# -- list ------------------------------------------------------------------------------------------

async def test_list_pages_in_creation_order_with_a_status_filter(open_api: Api) -> None:
    ids = [(await create(open_api, {**API_SHAPE, "name": f"w{n}"}))["id"] for n in range(5)]
    listed = await open_api.get("/api/workflows")
    assert listed.status == 200 and [w["id"] for w in listed.body] == ids
    assert [w["name"] for w in listed.body] == [f"w{n}" for n in range(5)]
    for _ in range(2):  # stable: the same page twice
        page = await open_api.get("/api/workflows", params={"limit": "2", "offset": "2"})
        assert [w["id"] for w in page.body] == ids[2:4]
    beyond = await open_api.get("/api/workflows", params={"offset": "5"})
    assert beyond.status == 200 and beyond.body == []
    for n in (1, 3):
        assert (await open_api.post(f"/api/workflows/{ids[n]}/run")).status == 202
    await open_api.claim("w1", labels=["linux"], max_jobs=10)
    running = await open_api.get("/api/workflows", params={"status": "running"})
    assert [w["id"] for w in running.body] == [ids[1], ids[3]]
    second = await open_api.get("/api/workflows",
                                params={"status": "running", "limit": "1", "offset": "1"})
    assert [w["id"] for w in second.body] == [ids[3]]
    for query in ({"limit": "0"}, {"limit": "1001"}, {"offset": "-1"}, {"status": "bogus"}):
        bad = await open_api.get("/api/workflows", params=query)
        assert bad.status == 400, (query, bad.text)


# -- status, run, cancel, runs ---------------------------------------------------------------------

async def test_status_has_seed_003_shape_plus_queue_and_run_id(open_api: Api) -> None:
    wf = (await create(open_api))["id"]
    run = await open_api.post(f"/api/workflows/{wf}/run")
    assert run.status == 202, run.text
    assert run.body["id"] == wf and set(run.body["jobs"]) == {"compile", "test"}
    claim = await open_api.claim("w1", labels=["linux"])
    await open_api.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                        {"outputs": {"bin": "a.out"}})
    reply = await open_api.get(f"/api/workflows/{wf}/status")
    assert reply.status == 200
    body = reply.body
    assert {"id", "name", "trigger", "jobs", "queue", "run_id"} <= set(body)
    assert (body["id"], body["queue"], body["run_id"]) == (wf, "default", run.body["run_id"])
    compile_, test = body["jobs"]
    for job in body["jobs"]:
        assert set(job) >= SEED_STATUS_JOB_FIELDS
    assert compile_["status"] == "success" and compile_["outputs"] == {"bin": "a.out"}
    assert isinstance(compile_["duration_secs"], int) and compile_["duration_secs"] >= 0
    assert compile_["duration_secs"] == compile_["duration_ms"] // 1000
    assert isinstance(compile_["started_at"], int)
    assert compile_["uid"] == run.body["jobs"]["compile"]
    assert (test["status"], test["duration_secs"], test["started_at"]) == ("queued", None, None)


async def test_run_while_active_is_202_started_false_with_the_active_run(open_api: Api) -> None:
    wf = (await create(open_api))["id"]
    first = await open_api.post(f"/api/workflows/{wf}/run")
    assert first.status == 202 and first.body["started"] is True
    busy = await open_api.post(f"/api/workflows/{wf}/run")
    assert busy.status == 202, busy.text
    assert busy.body == {**first.body, "started": False}
    claimed = await open_api.claim("w1", labels=["linux"], max_jobs=10)
    assert [c["job"]["job_id"] for c in claimed["claims"]] == ["compile"]  # roots only, once
    missing = await open_api.post("/api/workflows/ghost/run")
    assert missing.status == 404


async def test_cancel_is_202_and_404_for_an_unknown_workflow(open_api: Api) -> None:
    wf = (await create(open_api))["id"]
    idle = await open_api.post(f"/api/workflows/{wf}/cancel")
    assert idle.status == 202 and idle.body == {"id": wf, "cancelled": 0}
    await open_api.post(f"/api/workflows/{wf}/run")
    claim = await open_api.claim("w1", labels=["linux"])
    cancelled = await open_api.post(f"/api/workflows/{wf}/cancel")
    assert cancelled.status == 202 and cancelled.body == {"id": wf, "cancelled": 2}
    beat = await open_api.post(f"/api/jobs/{claim['lease']['lease_id']}/heartbeat")
    assert beat.status == 200 and beat.body["cancelled"] is True
    late = await open_api.post(f"/api/jobs/{claim['lease']['lease_id']}/complete")
    assert late.status == 409 and late.body["error"] == "job_cancelled"
    assert await job_statuses(open_api, wf) == {"compile": "cancelled", "test": "cancelled"}
    missing = await open_api.post("/api/workflows/ghost/cancel")
    assert missing.status == 404 and missing.body["error"] == "workflow_not_found"


async def test_run_history_and_the_cancelled_check_across_runs(open_api: Api) -> None:
    wf = (await create(open_api))["id"]
    assert (await open_api.get(f"/api/workflows/{wf}/runs")).body == []
    unknown = await open_api.get(f"/api/jobs/{wf}/compile/cancelled")
    assert unknown.status == 404  # no run yet
    first = (await open_api.post(f"/api/workflows/{wf}/run")).body
    check = await open_api.get(f"/api/jobs/{wf}/compile/cancelled")
    assert check.status == 200 and check.text == "false" and check.body is False
    await open_api.post(f"/api/workflows/{wf}/cancel")
    check = await open_api.get(f"/api/jobs/{wf}/compile/cancelled")
    assert check.text == "true" and check.body is True
    second = (await open_api.post(f"/api/workflows/{wf}/run")).body
    check = await open_api.get(f"/api/jobs/{wf}/compile/cancelled")
    assert check.text == "false"  # no stale cancel flag from the first run
    runs = await open_api.get(f"/api/workflows/{wf}/runs")
    assert runs.status == 200
    assert [(r["run_id"], r["status"]) for r in runs.body] == [
        (second["run_id"], "running"), (first["run_id"], "cancelled")]
    assert runs.body[0]["jobs"] == second["jobs"] and runs.body[1]["finished_at_ms"] is not None
    for path in (f"/api/jobs/{wf}/nojob/cancelled", "/api/jobs/ghost/compile/cancelled",
                 "/api/workflows/ghost/runs", "/api/workflows/ghost/status"):
        assert (await open_api.get(path)).status == 404, path


async def test_workflow_job_logs(open_api: Api) -> None:
    wf = (await create(open_api))["id"]
    await open_api.post(f"/api/workflows/{wf}/run")
    claim = await open_api.claim("w1", labels=["linux"])
    lease = claim["lease"]["lease_id"]
    sent = await open_api.post(f"/api/jobs/{lease}/logs", {"chunks": [
        {"data": "compiling\n", "stream": "stdout"}, {"data": "warning\n", "stream": "stderr"}]})
    assert sent.status == 202, sent.text
    await open_api.post(f"/api/jobs/{lease}/complete")
    logs = await open_api.get(f"/api/workflows/{wf}/jobs/compile/logs")
    assert logs.status == 200, logs.text
    assert [(c["data"], c["stream"]) for c in logs.body] == [
        ("compiling\n", "stdout"), ("warning\n", "stderr")]
    assert all(c["id"] for c in logs.body)
    empty = await open_api.get(f"/api/workflows/{wf}/jobs/test/logs")
    assert empty.status == 200 and empty.body == []
    assert (await open_api.get(f"/api/workflows/{wf}/jobs/ghost/logs")).status == 404


# -- the seed 003 sample (I1) over HTTP ------------------------------------------------------------

async def test_sample_runs_to_success_with_one_worker_over_http(open_api: Api) -> None:
    registered = await open_api.post("/api/workers/register",
                                     {"worker_id": "w1", "labels": ["deploy", "linux"]})
    assert registered.status == 201, registered.text
    sample = await open_api.post("/api/workflows/sample")
    assert sample.status == 201 and sample.body["id"] == "ci-1" and len(sample.body["jobs"]) == 8
    assert (await open_api.post("/api/workflows/ci-1/run")).status == 202
    completed: Counter[str] = Counter()
    claim = {"worker_id": "w1", "labels": ["deploy", "linux"], "lease_ttl_secs": 30}
    while True:
        reply = await open_api.post("/api/jobs/claim", claim)
        assert reply.status == 200, reply.text
        if reply.body is None:
            assert reply.text == "null"
            break
        job, lease = reply.body["job"], reply.body["lease"]
        assert job["workflow_id"] == "ci-1" and lease["worker_id"] == "w1"
        outputs = {"artifact": "build.tar.gz"} if job["job_id"] == "build" else {}
        if job["job_id"].startswith("deploy-"):
            assert job["upstream_outputs"]["build"] == {"artifact": "build.tar.gz"}
        done = await open_api.post(f"/api/jobs/{lease['lease_id']}/complete",
                                   {"outputs": outputs})
        assert done.status == 200, done.text
        completed[job["job_id"]] += 1
    assert sum(completed.values()) == 8 and set(completed.values()) == {1}
    assert set(completed) == {j["id"] for j in sample.body["jobs"]}
    status = await open_api.get("/api/workflows/ci-1/status")
    assert {j["status"] for j in status.body["jobs"]} == {"success"}
    runs = await open_api.get("/api/workflows/ci-1/runs")
    assert [r["status"] for r in runs.body] == ["success"]


async def test_sample_deploy_jobs_wait_for_a_worker_with_the_deploy_label(open_api: Api) -> None:
    await open_api.post("/api/workflows/sample")
    await open_api.post("/api/workflows/ci-1/run")
    done: list[str] = []
    while (reply := await open_api.claim("plain")) is not None:
        await open_api.post(f"/api/jobs/{reply['lease']['lease_id']}/complete")
        done.append(reply["job"]["job_id"])
    assert sorted(done) == ["audit", "build", "docs", "lint", "typecheck", "unit-tests"]
    statuses = await job_statuses(open_api, "ci-1")
    assert (statuses["deploy-db"], statuses["deploy-web"]) == ("queued", "queued")


# -- WORKFLOWS_DIR ---------------------------------------------------------------------------------

def write_definitions(directory: Path) -> None:
    (directory / "alpha.yml").write_text("name: Alpha\non: push\njobs:\n  a:\n    run: echo a\n")
    (directory / "beta.yaml").write_text(
        "name: Beta\non: push\njobs:\n  b:\n    run: echo b\n  c:\n    needs: b\n    run: c\n")
    (directory / "gamma.json").write_text(orjson.dumps(
        {"name": "Gamma", "jobs": [{"id": "g", "command": "echo g"}]}).decode())
    (directory / "README.md").write_text("not a definition")


async def test_workflows_dir_loads_at_start(settings: Settings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_definitions(tmp_path)
    monkeypatch.setenv("LEASEHOLD_WORKFLOWS_DIR", str(tmp_path))
    from_env = Settings(redis_url=settings.redis_url, namespace=settings.namespace)
    assert from_env.workflows_dir == str(tmp_path)
    services = await open_services(from_env)
    try:
        views = await services.workflows.list(100, 0, None)
        assert [(v.id, v.name) for v in views] == [
            ("alpha", "Alpha"), ("beta", "Beta"), ("gamma", "Gamma")]
        assert [j.id for j in views[1].jobs] == ["b", "c"]
        run = await services.workflows.run("beta")
        assert sorted(run.jobs) == ["b", "c"]
    finally:
        await services.close()
    again = await open_services(from_env)  # a restart reloads in place: same ids, same order
    try:
        assert [v.id for v in await again.workflows.list(100, 0, None)] == [
            "alpha", "beta", "gamma"]
    finally:
        await again.close()


async def test_workflows_dir_is_served_by_the_app(make_api: Any, tmp_path: Path) -> None:
    write_definitions(tmp_path)
    api: Api = await make_api(auth=False, workflows_dir=str(tmp_path))
    listed = await api.get("/api/workflows")
    assert [w["id"] for w in listed.body] == ["alpha", "beta", "gamma"]
    assert (await api.post("/api/workflows/gamma/run")).status == 202


@pytest.mark.parametrize(("filename", "text", "problem"), [
    ("broken.yml", "name: x\njobs: [\n", "malformed YAML"),
    ("cyclic.yaml", "name: x\njobs:\n  a:\n    needs: a\n    run: x\n", "dependency cycle: a -> a"),
    ("bad.json", "{nope", "malformed JSON"),
])
async def test_a_bad_definition_file_is_a_clear_start_up_error(
        settings: Settings, tmp_path: Path, filename: str, text: str, problem: str) -> None:
    write_definitions(tmp_path)
    bad = tmp_path / filename
    bad.write_text(text)
    with pytest.raises(errors.InvalidArgument) as caught:
        await open_services(settings.model_copy(update={"workflows_dir": str(tmp_path)}))
    assert str(bad) in caught.value.message and problem in caught.value.message
    services = await open_services(settings)  # nothing of the directory was stored
    try:
        assert await services.workflows.list(100, 0, None) == []
    finally:
        await services.close()


async def test_delete_removes_the_definition_and_its_runs_cancelling_an_active_one(
        open_api: Api, settings: Settings, redis: aioredis.Redis) -> None:
    workflow = await create(open_api)
    first = (await open_api.post(f"/api/workflows/{workflow['id']}/run")).body
    compile_job = first["jobs"]["compile"]
    lease = (await open_api.claim("w1", labels=["linux"]))["lease"]["lease_id"]
    await open_api.post(f"/api/jobs/{lease}/fail", {"error": "x"})  # the first run ends
    second = (await open_api.post(f"/api/workflows/{workflow['id']}/run")).body
    assert second["run_id"] != first["run_id"]

    deleted = await open_api.delete(f"/api/workflows/{workflow['id']}")
    assert deleted.status == 200, deleted.text
    assert deleted.body == {"id": workflow["id"], "deleted": True, "cancelled": 2,
                            "runs_deleted": 2}
    assert (await open_api.get(f"/api/workflows/{workflow['id']}/status")).status == 404
    assert (await open_api.post(f"/api/workflows/{workflow['id']}/run")).status == 404
    assert workflow["id"] not in [w["id"] for w in (await open_api.get("/api/workflows")).body]
    assert (await open_api.delete(f"/api/workflows/{workflow['id']}")).status == 404
    # The jobs stay readable until their own retention ends; the active run's were cancelled.
    assert (await open_api.job(compile_job))["status"] == "failure"
    assert (await open_api.job(second["jobs"]["test"]))["status"] == "cancelled"
    left = [k async for k in redis.scan_iter(match=f"{{{settings.namespace}*")
            if workflow["id"] in k or first["run_id"] in k or second["run_id"] in k]
    assert left == []


async def test_delete_is_for_admins(api: Api) -> None:
    workflow = await create(api)
    _, submitter = await api.api_token("submitter")
    refused = await api.delete(f"/api/workflows/{workflow['id']}", token=submitter)
    assert refused.status == 403
    assert (await api.get(f"/api/workflows/{workflow['id']}/status")).status == 200


async def test_an_ended_run_expires_with_its_jobs_results(
        open_api: Api, settings: Settings, redis: aioredis.Redis) -> None:
    workflow = await create(open_api, {"name": "one", "jobs": [{"id": "a", "command": "x"}]})
    run = (await open_api.post(f"/api/workflows/{workflow['id']}/run")).body
    prefix = f"{{{settings.namespace}:default}}:"
    assert await redis.ttl(prefix + f"wfrun:{run['run_id']}") == -1  # running: kept
    lease = (await open_api.claim("w1"))["lease"]["lease_id"]
    await open_api.post(f"/api/jobs/{lease}/complete", {"outputs": {}})
    job_ttl = await redis.pttl(prefix + f"job:{run['jobs']['a']}")
    for key in (f"wfrun:{run['run_id']}", f"wfruns:{workflow['id']}", f"wf:{workflow['id']}"):
        assert abs(await redis.pttl(prefix + key) - job_ttl) < 5000, key
    # A later run keeps the history while it runs, and drops runs that already expired.
    await redis.delete(prefix + f"wfrun:{run['run_id']}")  # as if retention had ended
    again = (await open_api.post(f"/api/workflows/{workflow['id']}/run")).body
    assert await redis.ttl(prefix + f"wfruns:{workflow['id']}") == -1
    assert await redis.zrange(prefix + f"wfruns:{workflow['id']}", 0, -1) == [again["run_id"]]
    status = (await open_api.get(f"/api/workflows/{workflow['id']}/status")).body
    assert status["run_id"] == again["run_id"]
