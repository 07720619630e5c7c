"""A Stella Ops agent, as seed 004 documents it, against /api/v1/agents."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.harness import ADMIN, Api, snapshot

BASE = "/api/v1/agents"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


async def call(api: Api, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    async with api.client.request(method, path, data=data, headers=headers or {}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def register(api: Api, name: str, capabilities: list[str]) -> tuple[str, dict[str, str]]:
    regtoken = await api.registration_token()
    status, reply = await call(api, "POST", BASE + "/register", {
        "name": name, "version": "1.0.0", "capabilities": capabilities,
        "labels": {"datacenter": "us-east-1", "role": "deployment"}},
        {"X-Agent-Token": regtoken})
    assert status == 201, reply
    assert reply["config"]["taskPollInterval"] == 5 and reply["config"]["heartbeatInterval"] > 0
    return reply["agentId"], {"Authorization": f"Bearer {reply['token']}"}


async def submit(api: Api, task_type: str, **extra: Any) -> str:
    job = await api.submit(queue="stella", command=task_type,
                           payload={"image": "myapp", "tag": "v2.3.1"}, **extra)
    job_id: str = job["id"]
    return job_id


HEARTBEAT = {"status": "healthy", "resourceUsage": {"cpu": 15.5, "memory": 45.2, "disk": 60.0},
             "capabilities": ["docker", "compose"], "runningTasks": 0}


async def test_agent_life_heartbeat_delivers_tasks(api: Api, settings: Settings,
                                                   redis: aioredis.Redis) -> None:
    agent_id, auth = await register(api, "agent-prod-01", ["docker", "compose"])
    status, reply = await call(api, "POST", f"{BASE}/{agent_id}/heartbeat", HEARTBEAT, auth)
    assert (status, reply) == (200, {"tasks": []})

    task_id = await submit(api, "docker.pull", required_labels=["cap:docker"])
    status, reply = await call(api, "POST", f"{BASE}/{agent_id}/heartbeat", HEARTBEAT, auth)
    [task] = reply["tasks"]
    assert task["taskId"] == task_id and task["taskType"] == "docker.pull"
    assert task["payload"] == {"image": "myapp", "tag": "v2.3.1"} and task["timeout"] > 0
    assert (await api.job(task_id))["status"] == "running"
    status, reply = await call(api, "POST", f"{BASE}/{agent_id}/tasks/{task_id}/complete", {
        "success": True, "result": {"imageId": "sha256:abc123"},
        "logs": [{"timestamp": "2026-01-10T14:23:45Z", "level": "info",
                  "message": "Pulling image..."}]}, auth)
    assert (status, reply) == (200, {"acknowledged": True})
    job = await api.job(task_id)
    assert job["status"] == "success" and job["outputs"] == {"imageId": "sha256:abc123"}
    logs = await api.get(f"/api/jobs/{task_id}/logs")
    assert [c["data"] for c in logs.body] == ["[info] Pulling image...\n"]

    failing = await submit(api, "docker.run")
    status, reply = await call(api, "GET", f"{BASE}/{agent_id}/tasks", headers=auth)
    assert [t["taskId"] for t in reply["tasks"]] == [failing]
    status, reply = await call(api, "POST", f"{BASE}/{agent_id}/tasks/{failing}/complete",
                               {"success": False, "result": {"error": "no such image"}}, auth)
    assert status == 200
    job = await api.job(failing)
    assert job["status"] == "failure" and job["error"] == "no such image"

    status, agents = await call(api, "GET", BASE, headers=ADMIN_H)
    assert status == 200
    [me] = [a for a in agents if a["id"] == agent_id]
    assert me["capabilities"] == ["compose", "docker"] and me["status"] == "online"
    assert me["labels"] == {"datacenter": "us-east-1", "role": "deployment"}
    status, agents = await call(api, "GET", BASE + "?capability=ssh&status=online",
                                headers=ADMIN_H)
    assert agents == []
    status, updated = await call(api, "PUT", f"{BASE}/{agent_id}", {
        "labels": {"datacenter": "us-west-2"}, "capabilities": ["docker", "compose", "ssh"]},
        ADMIN_H)
    assert status == 200 and updated["labels"] == {"datacenter": "us-west-2"}
    assert sorted(updated["capabilities"]) == ["compose", "docker", "ssh"]
    status, mine = await call(api, "GET", f"{BASE}/{agent_id}", headers=auth)
    assert status == 200 and mine["name"] == "agent-prod-01"

    token = auth["Authorization"][7:]
    stored = repr(await snapshot(redis, settings.namespace))
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    status, reply = await call(api, "DELETE", f"{BASE}/{agent_id}",
                               headers=ADMIN_H)
    assert (status, reply) == (200, {"deleted": True})
    status, _ = await call(api, "POST", f"{BASE}/{agent_id}/heartbeat", HEARTBEAT, auth)
    assert status == 401, "a revoked agent's token fails at once"


async def test_task_stream_pushes_and_takes_messages(api: Api) -> None:
    agent_id, auth = await register(api, "streamer", ["docker"])
    async with api.client.ws_connect(f"{BASE}/{agent_id}/task-stream", headers=auth) as ws:
        task_id = await submit(api, "docker.pull")
        assigned = await asyncio.wait_for(ws.receive_json(), 10)
        assert assigned["type"] == "task_assigned" and assigned["task"]["taskId"] == task_id
        await ws.send_json({"type": "task_progress", "taskId": task_id, "progress": 50,
                            "message": "Pulling layer 3/5"})
        await ws.send_json({"type": "task_log", "taskId": task_id, "level": "info",
                            "message": "layer done"})
        for _ in range(100):
            job = await api.job(task_id)
            logs = await api.get(f"/api/jobs/{task_id}/logs")
            if job["progress"] == 50 and logs.body:
                break
            await asyncio.sleep(0.05)
        assert job["progress"] == 50 and job["progress_message"] == "Pulling layer 3/5"
        assert [c["data"] for c in logs.body] == ["[info] layer done\n"]
        await api.post(f"/api/jobs/{task_id}/cancel")
        cancelled = await asyncio.wait_for(ws.receive_json(), 10)
        assert cancelled == {"type": "task_cancelled", "taskId": task_id}


async def test_refusals_change_nothing(api: Api, settings: Settings,
                                       redis: aioredis.Redis) -> None:
    one, one_auth = await register(api, "one", ["docker"])
    two, two_auth = await register(api, "two", ["docker"])
    task_id = await submit(api, "docker.pull")
    status, reply = await call(api, "POST", f"{BASE}/{one}/heartbeat", HEARTBEAT, one_auth)
    assert reply["tasks"][0]["taskId"] == task_id
    regtoken = await api.registration_token()
    before = await snapshot(redis, settings.namespace)
    refused = [
        ("POST", BASE + "/register", {"name": "one"}, {"X-Agent-Token": regtoken}, 409),
        ("POST", BASE + "/register", {"name": "x"}, {"X-Agent-Token": "lhr_bad"}, 401),
        ("POST", BASE + "/register", {"version": "1"}, {"X-Agent-Token": regtoken}, 400),
        ("POST", f"{BASE}/{one}/heartbeat", HEARTBEAT, two_auth, 403),
        ("POST", f"{BASE}/{two}/tasks/{task_id}/complete", {"success": True}, two_auth, 403),
        ("POST", f"{BASE}/{one}/tasks/{task_id}/complete", {"result": {}}, one_auth, 400),
        ("PUT", f"{BASE}/{one}", {"capabilities": ["ssh"]}, one_auth, 403),
        ("DELETE", f"{BASE}/{two}", None, one_auth, 403),
        ("GET", f"{BASE}/nobody", None, ADMIN_H, 404),
        ("GET", BASE + "?status=sleepy", None, ADMIN_H, 400),
    ]
    for method, path, body, headers, expected in refused:
        status, reply = await call(api, method, path, body, headers)
        assert status == expected, (path, reply)
        assert reply["error"] and reply["message"], reply
    assert await snapshot(redis, settings.namespace) == before
