"""CORS allow-list and the 429 that stops token guessing."""

from __future__ import annotations

from tests.api.conftest import MakeApi


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
    # even the right token waits out the window from that address: guessing gains nothing
    assert (await api.get("/api/queues")).status == 429


async def test_successful_calls_do_not_count_toward_the_limit(make_api: MakeApi) -> None:
    api = await make_api(auth_failures_per_minute=3)
    for _ in range(20):
        assert (await api.get("/api/queues")).status == 200
    assert (await api.get("/api/queues", token="nope")).status == 401
