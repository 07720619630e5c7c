"""``LeaseholdClient``: backoff, error mapping, and which calls are retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

import leasehold.api.fleet.client as client_module
from leasehold.api.fleet.client import (
    LEASE_CODES,
    BadRequest,
    Conflict,
    Forbidden,
    LeaseholdClient,
    LeaseholdError,
    LeaseLost,
    NotFound,
    Unauthorized,
    Unavailable,
    _error,
    backoff_delay,
)
from tests.redis_server import free_port

Reply = Callable[[web.Request], Awaitable[web.Response]]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    for attempt in range(12):
        ceiling = min(10.0, 0.2 * 2**attempt)
        samples = [backoff_delay(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # spread over the range, not pinned to 0
    assert all(backoff_delay(30, base=0.5, cap=15) <= 15 for _ in range(100))


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequest), (413, BadRequest), (401, Unauthorized), (403, Forbidden),
    (404, NotFound), (409, Conflict), (503, Unavailable), (500, LeaseholdError),
    (418, LeaseholdError)])
def test_status_maps_to_error_class(status: int, cls: type[LeaseholdError]) -> None:
    error = _error(status, orjson.dumps({"error": "some_code", "message": "why"}))
    assert type(error) is cls
    assert (error.status, error.code, error.message) == (status, "some_code", "why")
    assert str(error) == f"{status} some_code: why"
    assert error.body == {"error": "some_code", "message": "why"}


@pytest.mark.parametrize("code", sorted(LEASE_CODES))
def test_lease_codes_are_lease_lost(code: str) -> None:
    error = _error(409, orjson.dumps({"error": code, "message": "gone"}))
    assert isinstance(error, LeaseLost) and isinstance(error, Conflict)
    assert error.code == code


def test_other_conflicts_are_not_lease_lost() -> None:
    error = _error(409, orjson.dumps({"error": "invalid_state", "message": "no"}))
    assert type(error) is Conflict


@pytest.mark.parametrize("raw", [b"<html>bad gateway</html>", b"[1, 2]", b""])
def test_a_body_that_is_not_an_error_object_still_maps(raw: bytes) -> None:
    error = _error(502, raw)
    assert type(error) is LeaseholdError
    assert error.code == "http_error"
    assert error.message == raw.decode()
    assert error.body == {}


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "backoff_delay", lambda attempt: 0.0)


class Scripted:
    """A test server answering each request with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int], body: object = None) -> None:
        self.statuses = statuses
        self.body = body if body is not None else {"ok": True}
        self.calls: list[tuple[str, str, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path, request.headers.get("Authorization")))
        if self.statuses:
            status = self.statuses.pop(0)
            code = "unavailable" if status == 503 else "job_finished" if status == 409 else "x"
            return web.json_response({"error": code, "message": f"status {status}"},
                                     status=status)
        return web.json_response(self.body)


async def serve(aiohttp_server: AiohttpServer, script: Scripted) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.mark.usefixtures("no_sleep")
async def test_503_is_retried_until_it_succeeds(aiohttp_server: AiohttpServer) -> None:
    script = Scripted([503, 503])
    async with LeaseholdClient(await serve(aiohttp_server, script), "tok", retries=5) as api:
        assert await api.request("GET", "/api/queues") == {"ok": True}
    assert script.calls == [("GET", "/api/queues", "Bearer tok")] * 3


@pytest.mark.usefixtures("no_sleep")
async def test_retries_run_out(aiohttp_server: AiohttpServer) -> None:
    script = Scripted([503] * 10)
    async with LeaseholdClient(await serve(aiohttp_server, script), retries=2) as api:
        with pytest.raises(Unavailable) as raised:
            await api.request("GET", "/api/queues")
    assert raised.value.status == 503
    assert len(script.calls) == 3
    assert script.calls[0][2] is None  # no token, no Authorization header


@pytest.mark.usefixtures("no_sleep")
async def test_other_errors_are_not_retried(aiohttp_server: AiohttpServer) -> None:
    script = Scripted([400])
    async with LeaseholdClient(await serve(aiohttp_server, script)) as api:
        with pytest.raises(BadRequest):
            await api.request("POST", "/api/jobs", {"command": "true"})
    assert len(script.calls) == 1


@pytest.mark.usefixtures("no_sleep")
async def test_claims_are_never_retried(aiohttp_server: AiohttpServer) -> None:
    script = Scripted([503])
    async with LeaseholdClient(await serve(aiohttp_server, script)) as api:
        with pytest.raises(Unavailable):
            await api.claim([], max_jobs=2)
    assert script.calls == [("POST", "/api/jobs/claim", None)]


@pytest.mark.usefixtures("no_sleep")
async def test_complete_accepts_job_finished_after_a_retry(aiohttp_server: AiohttpServer) -> None:
    script = Scripted([503, 409])  # the first attempt got through, its reply did not
    async with LeaseholdClient(await serve(aiohttp_server, script)) as api:
        await api.complete("lease-1", {"k": "v"})
    assert [c[1] for c in script.calls] == ["/api/jobs/lease-1/complete"] * 2


async def test_complete_raises_other_lease_errors(aiohttp_server: AiohttpServer) -> None:
    async def expired(request: web.Request) -> web.Response:
        return web.json_response({"error": "lease_expired", "message": "late"}, status=409)

    app = web.Application()
    app.router.add_post("/api/jobs/{lease}/complete", expired)
    server = await aiohttp_server(app)
    async with LeaseholdClient(str(server.make_url("")).rstrip("/")) as api:
        with pytest.raises(LeaseLost) as raised:
            await api.complete("lease-1")
    assert raised.value.code == "lease_expired"


@pytest.mark.usefixtures("no_sleep")
async def test_an_unreachable_server_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with LeaseholdClient(url, retries=1) as api:
        with pytest.raises(Unavailable) as raised:
            await api.request("GET", "/readyz")
    assert (raised.value.status, raised.value.code) == (0, "unreachable")
    assert raised.value.message.startswith(url)
