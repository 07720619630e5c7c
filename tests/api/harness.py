"""An authenticated JSON client over aiohttp's TestClient, Redis snapshots, and route coverage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

ADMIN = "lha_test-admin-9f2c4e1b7d8a6053"
NO_BODY: Any = object()
DEFAULT: Any = object()

# (method, route template) of every route that answered 2xx during this session.
COVERED: set[tuple[str, str]] = set()

Client = TestClient[web.Request, web.Application]


async def record_route(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: remembers which route templates succeeded."""
    resource = request.match_info.route.resource
    if resource is not None and response.status < 400:
        COVERED.add((request.method, resource.canonical))


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: CIMultiDictProxy[str]


class Api:
    """Calls the API as one principal; checks every error reply has SPEC §3's shape."""

    def __init__(self, client: Client, token: str | None = ADMIN,
                 headers: dict[str, str] | None = None,
                 transcript: list[Reply] | None = None,
                 registered: set[str] | None = None) -> None:
        self.client = client
        self.token = token
        self.extra_headers = headers or {}
        self.transcript: list[Reply] = [] if transcript is None else transcript
        self.registered: set[str] = set() if registered is None else registered

    def as_(self, token: str | None, headers: dict[str, str] | None = None) -> Api:
        """The same client acting with another token; replies go to the same transcript."""
        return Api(self.client, token, headers, self.transcript, self.registered)

    @property
    def app(self) -> web.Application:
        return self.client.app

    async def call(self, method: str, path: str, body: Any = NO_BODY, *,
                   data: bytes | str | None = None, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, token: str | None = DEFAULT) -> Reply:
        sent = dict(self.extra_headers)
        chosen = self.token if token is DEFAULT else token
        if chosen is not None:
            sent["Authorization"] = f"Bearer {chosen}"
        sent.update(headers or {})
        payload: bytes | str | None = data
        if body is not NO_BODY:
            payload = orjson.dumps(body)
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=payload, params=params,
                                       headers=sent) as resp:
            text = await resp.text()
            parsed: Any = None
            if resp.content_type == "application/json":
                parsed = orjson.loads(text)
            reply = Reply(resp.status, parsed, text, resp.headers)
        check_reply(reply)
        self.transcript.append(reply)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = NO_BODY, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any = NO_BODY, **kw: Any) -> Reply:
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    # -- common steps ----------------------------------------------------------------------------

    async def submit(self, **spec: Any) -> dict[str, Any]:
        """Submits a job; one with neither command nor payload runs ``true``."""
        if "command" not in spec and "payload" not in spec:
            spec["command"] = "true"
        reply = await self.post("/api/jobs", spec)
        assert reply.status == 201, reply.text
        return cast(dict[str, Any], reply.body)

    async def claim_reply(self, worker_id: str | None = None, **extra: Any) -> Reply:
        body = {"labels": [], **extra}
        if worker_id is not None:
            body["worker_id"] = worker_id
            if self.token in (ADMIN, None):
                await self.ensure_worker(worker_id)
        return await self.post("/api/jobs/claim", body)

    async def claim(self, worker_id: str | None = None, **extra: Any) -> Any:
        """The claim reply's body: {job, lease}, None, or {claims: [...]} with max_jobs."""
        reply = await self.claim_reply(worker_id, **extra)
        assert reply.status == 200, reply.text
        return reply.body

    async def ensure_worker(self, worker_id: str) -> None:
        """Registers ``worker_id`` once (an admin claims only for a registered worker)."""
        if worker_id in self.registered:
            return
        reply = await self.post("/api/workers/register", {"worker_id": worker_id, "labels": []})
        assert reply.status in (201, 409), reply.text  # 409: the test registered it already
        self.registered.add(worker_id)

    async def job(self, job_id: str) -> dict[str, Any]:
        reply = await self.get(f"/api/jobs/{job_id}")
        assert reply.status == 200, reply.text
        return cast(dict[str, Any], reply.body)

    async def api_token(self, role: str, name: str = "test") -> tuple[str, str]:
        """(id, raw token) of a new API token, created with this Api's (admin) token."""
        reply = await self.post("/api/tokens", {"role": role, "name": name})
        assert reply.status == 201, reply.text
        assert reply.body["role"] == role
        return reply.body["id"], reply.body["token"]

    async def registration_token(self, ttl_secs: float = 60, uses: int = 1) -> str:
        reply = await self.post("/api/registration-tokens", {"ttl_secs": ttl_secs, "uses": uses})
        assert reply.status == 201, reply.text
        token: str = reply.body["token"]
        return token

    async def register(self, worker_id: str, labels: list[str] | None = None) -> Api:
        """Registers a worker with a fresh registration token; an Api acting as that worker."""
        regtoken = await self.registration_token()
        reply = await self.post("/api/workers/register",
                                {"worker_id": worker_id, "labels": labels or []}, token=regtoken)
        assert reply.status == 201, reply.text
        assert reply.body["worker_id"] == worker_id
        return self.as_(reply.body["worker_token"])


def check_reply(reply: Reply) -> None:
    """SPEC §3: never a traceback; every non-2xx is JSON with ``error`` and ``message``."""
    assert "Traceback" not in reply.text and 'File "' not in reply.text, reply.text
    if reply.status >= 400:
        assert isinstance(reply.body, dict), (reply.status, reply.text)
        assert isinstance(reply.body.get("error"), str) and reply.body["error"], reply.text
        assert isinstance(reply.body.get("message"), str) and reply.body["message"], reply.text


# -- Redis snapshots -------------------------------------------------------------------------------

def namespace_patterns(namespace: str) -> list[str]:
    return [f"{{{namespace}:*", f"{{{namespace}}}:*", f"{namespace}:queues"]


async def snapshot(redis: aioredis.Redis, namespace: str) -> dict[str, tuple[str, Any]]:
    """Every key of the namespace with its type and full value (no DUMP: readable diffs)."""
    keys: set[str] = set()
    for pattern in namespace_patterns(namespace):
        async for key in redis.scan_iter(match=pattern, count=1000):
            keys.add(key)
    state: dict[str, tuple[str, Any]] = {}
    for key in sorted(keys):
        kind = cast(str, await redis.type(key))
        value: Any
        if kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = await redis.get(key)
        state[key] = (kind, value)
    return state
