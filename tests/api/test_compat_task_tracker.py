"""A task_tracker worker and manager, as seed 001 documents them, against /compat/task-tracker."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.conftest import MakeApi
from tests.api.harness import ADMIN, Api, snapshot

TT = "/compat/task-tracker"


async def tt(api: Api, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """One seed-shaped call: JSON body, the seed's headers; every reply is the envelope."""
    data = orjson.dumps(body) if body is not None else None
    async with api.client.request(method, TT + path, data=data, headers=headers or {}) as resp:
        reply = orjson.loads(await resp.read())
    assert isinstance(reply["ok"], bool), reply
    seed_fields = {"ok", "message", "rate_limit_delay", "content"}
    if resp.status >= 400:  # plus the native error code, which the seed's client ignores
        assert set(reply) <= seed_fields | {"error", "request_id"} and reply["error"], reply
    else:
        assert set(reply) <= seed_fields, reply
    if not reply["ok"]:
        assert reply["message"], reply
    return resp.status, reply


MANAGER = {"Authorization": f"Bearer {ADMIN}"}


async def make_worker(api: Api, alias: str) -> dict[str, str]:
    regtoken = await api.registration_token()
    status, reply = await tt(api, "POST", "/worker/create", {"alias": alias},
                             {"Authorization": f"Bearer {regtoken}"})
    assert status == 200 and reply["ok"], reply
    worker = reply["content"]["worker"]
    assert isinstance(worker["id"], int) and worker["alias"] == alias
    assert worker["paused"] is False and worker["created"] > 0
    return {"X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}


async def make_project(api: Api, name: str, **extra: Any) -> int:
    status, reply = await tt(api, "POST", "/project/create",
                             {"name": name, "clone_url": "http://github.com/test/test",
                              "git_repo": "myrepo", "version": "1.0", "priority": 999,
                              "motd": "", "public": True, "hidden": False, "chain": 0,
                              **extra}, MANAGER)
    assert status == 200 and reply["ok"], reply
    project_id: int = reply["content"]["id"]
    return project_id


def task(project: int, recipe: str, **extra: Any) -> dict[str, Any]:
    return {"project": project, "max_retries": 3, "recipe": recipe, "priority": 1,
            "max_assign_time": 3600, "hash_u64": 0, "unique_string": "",
            "verification_count": 0, **extra}


async def test_worker_life_submit_get_release(api: Api, settings: Settings,
                                              redis: aioredis.Redis) -> None:
    worker = await make_worker(api, "some alias")
    project = await make_project(api, "myproject")
    _, submitter = await api.api_token("submitter")
    producer = {"X-Secret": submitter}

    status, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    assert (status, reply) == (200, {"ok": False, "message": "No task available"})

    status, reply = await tt(api, "POST", "/task/submit", task(project, "test recipe"), producer)
    assert status == 200 and reply["ok"], reply
    status, reply = await tt(api, "POST", "/task/bulk_submit", {"requests": [
        task(project, "low", priority=0), task(project, "high", priority=5)]}, producer)
    assert reply["ok"], reply

    status, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    got = reply["content"]["task"]
    assert got["recipe"] == "high", "the seed assigns the highest priority first"
    assert got["assignee"] == int(worker["X-Worker-ID"]) and got["status"] == 1
    assert got["max_retries"] == 3 and got["max_assign_time"] == 3600
    assert got["project"]["id"] == project and got["project"]["name"] == "myproject"
    assert (await api.job(got["id"]))["status"] == "running", "an ordinary job"

    status, reply = await tt(api, "POST", "/task/release",
                             {"task_id": got["id"], "result": 0, "verification": 0}, worker)
    assert (status, reply) == (200, {"ok": True, "content": {"updated": True}})
    assert (await api.job(got["id"]))["status"] == "success"

    # TR_FAIL uses a retry; max_retries: 3 means three attempts in all
    for attempt in range(3):
        _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
        got = reply["content"]["task"]
        assert got["recipe"] == "test recipe" and got["retries"] == attempt
        _, reply = await tt(api, "POST", "/task/release",
                            {"task_id": got["id"], "result": 1, "verification": 0}, worker)
        assert reply == {"ok": True, "content": {"updated": True}}
    listed = await api.get("/api/jobs", params={"queue": "myproject"})
    statuses = sorted(job["status"] for job in listed.body["jobs"])
    assert statuses == ["failure", "queued", "success"], statuses

    # TR_SKIP: as if never touched (the attempt count does not move)
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    skipped = reply["content"]["task"]
    assert skipped["recipe"] == "low"
    _, reply = await tt(api, "POST", "/task/release",
                        {"task_id": skipped["id"], "result": 2}, worker)
    assert reply["ok"]
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    assert reply["content"]["task"]["id"] == skipped["id"]
    assert reply["content"]["task"]["retries"] == 0


async def test_dedup_refuses_the_duplicate(api: Api) -> None:
    project = await make_project(api, "dedup")
    for key in ({"hash_u64": 1234}, {"unique_string": "page/17"}):
        _, first = await tt(api, "POST", "/task/submit", task(project, "a", **key), MANAGER)
        assert first["ok"], first
        status, again = await tt(api, "POST", "/task/submit", task(project, "b", **key), MANAGER)
        assert status == 409 and not again["ok"] and "already exists" in again["message"]
    status, both = await tt(api, "POST", "/task/submit",
                            task(project, "c", hash_u64=1, unique_string="x"), MANAGER)
    assert status == 400 and not both["ok"]
    listed = await api.get("/api/jobs", params={"queue": "dedup"})
    assert sorted(job["command"] for job in listed.body["jobs"]) == ["a", "a"]


async def test_verification_needs_agreeing_workers(api: Api) -> None:
    project = await make_project(api, "verified")
    one, two = await make_worker(api, "one"), await make_worker(api, "two")
    _, reply = await tt(api, "POST", "/task/submit",
                        task(project, "count words", verification_count=2), MANAGER)
    assert reply["ok"]
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=one)
    task_id = reply["content"]["task"]["id"]
    assert reply["content"]["task"]["verification_count"] == 2
    _, reply = await tt(api, "POST", "/task/release",
                        {"task_id": task_id, "result": 0, "verification": -32315129}, one)
    assert reply["ok"] and reply["content"] == {"updated": False}
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=one)
    assert reply == {"ok": False, "message": "No task available"}, "one vote per worker"
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=two)
    assert reply["content"]["task"]["id"] == task_id
    _, reply = await tt(api, "POST", "/task/release",
                        {"task_id": task_id, "result": 0, "verification": -32315129}, two)
    assert reply == {"ok": True, "content": {"updated": True}}
    assert (await api.job(task_id))["status"] == "success"


async def test_pause_and_project_get(api: Api) -> None:
    worker = await make_worker(api, "w")
    project = await make_project(api, "pausable", assign_rate=0, submit_rate=0)
    _, reply = await tt(api, "POST", "/task/submit", task(project, "r"), MANAGER)
    fields = {"name": "pausable", "priority": 1, "paused": True}
    _, reply = await tt(api, "POST", f"/project/update/{project}", fields, MANAGER)
    assert reply == {"ok": True}
    _, reply = await tt(api, "GET", f"/project/get/{project}", headers=worker)
    assert reply["content"]["paused"] is True and reply["content"]["id"] == project
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    assert reply["ok"] is False
    _, reply = await tt(api, "POST", f"/project/update/{project}", {**fields, "paused": False},
                        MANAGER)
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    assert reply["content"]["task"]["recipe"] == "r"


async def test_submit_rate_limit_answers_429_with_delay(api: Api) -> None:
    project = await make_project(api, "limited", submit_rate=0.01)
    _, reply = await tt(api, "POST", "/task/submit", task(project, "1"), MANAGER)
    assert reply["ok"]
    status, reply = await tt(api, "POST", "/task/submit", task(project, "2"), MANAGER)
    assert status == 429 and reply["message"] == "Too many requests"
    assert reply["rate_limit_delay"] > 0


async def test_credentials_and_bad_input_change_nothing(
    make_api: MakeApi, redis: aioredis.Redis, settings: Settings
) -> None:
    api = await make_api()
    worker = await make_worker(api, "honest")
    other = await make_worker(api, "other")
    project = await make_project(api, "guarded")
    _, reply = await tt(api, "POST", "/task/submit", task(project, "r"), MANAGER)
    _, reply = await tt(api, "GET", f"/task/get/{project}", headers=worker)
    task_id = reply["content"]["task"]["id"]
    secret = worker["X-Secret"]
    stored = await snapshot(redis, settings.namespace)
    assert secret not in repr(stored), "secrets are stored as SHA-256 only"
    assert hashlib.sha256(secret.encode()).hexdigest() in repr(stored)

    refused: list[tuple[str, str, Any, dict[str, str], int]] = [
        ("POST", "/worker/create", {"alias": "x"}, {}, 401),  # no registration token
        ("POST", "/worker/create", {"alias": "unassigned"}, MANAGER, 400),
        ("GET", f"/task/get/{project}", None, {**worker, "X-Secret": "wrong"}, 401),
        ("GET", f"/task/get/{project}", None, {**worker, "X-Worker-ID": "1"}, 401),
        ("GET", "/task/get/999", None, worker, 404),
        ("POST", "/task/submit", task(project, "by a worker"), worker, 403),
        ("POST", "/task/submit", {**task(project, ""), "recipe": ""}, MANAGER, 400),
        ("POST", "/task/submit", task(project, "x", max_retries=-1), MANAGER, 400),
        ("POST", "/task/bulk_submit", {"requests": []}, MANAGER, 400),
        ("POST", "/task/bulk_submit", {"requests": [task(project, "a"), task(999, "b")]},
         MANAGER, 404),
        ("POST", "/task/release", {"task_id": task_id, "result": 0}, other, 403),
        ("POST", "/task/release", {"task_id": task_id, "result": 7}, worker, 400),
        ("POST", "/task/release", {"task_id": "nope", "result": 0}, worker, 404),
        ("POST", "/project/create", {"name": "bad name!"}, MANAGER, 400),
        ("POST", "/project/create", {"name": "guarded"}, MANAGER, 409),
        ("POST", "/project/create", {"name": "mine"}, worker, 403),
        ("POST", f"/project/update/{project}", {"name": "guarded", "paused": True}, worker, 403),
        ("GET", "/project/get/12345", None, MANAGER, 404),
    ]
    before = await snapshot(redis, settings.namespace)
    for method, path, body, headers, expected in refused:
        status, reply = await tt(api, method, path, body, headers)
        assert (status, reply["ok"]) == (expected, False), (path, body, reply)
    assert await snapshot(redis, settings.namespace) == before


async def test_auth_off_a_worker_is_named_by_its_id(open_api: Api) -> None:
    status, reply = await tt(open_api, "POST", "/worker/create", {"alias": "local"})
    assert status == 200 and reply["ok"], reply
    worker = {"X-Worker-ID": str(reply["content"]["worker"]["id"])}
    project = await make_project(open_api, "local")
    _, reply = await tt(open_api, "POST", "/task/submit", task(project, "r"))
    assert reply["ok"], reply
    _, reply = await tt(open_api, "GET", f"/task/get/{project}", headers=worker)
    assert reply["content"]["task"]["assignee"] == int(worker["X-Worker-ID"])
    _, reply = await tt(open_api, "POST", "/task/release",
                        {"task_id": reply["content"]["task"]["id"], "result": 0}, worker)
    assert reply == {"ok": True, "content": {"updated": True}}
    status, reply = await tt(open_api, "GET", f"/task/get/{project}",
                             headers={"X-Worker-ID": "404"})
    assert (status, reply["ok"]) == (401, False), "an unknown worker id is refused"
