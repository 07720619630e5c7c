"""/openapi.json is a valid OpenAPI 3.1 document of every route; /docs needs no CDN."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from openapi_spec_validator import validate
from pydantic import Field, create_model

from leasehold.api.server.openapi import Schemas
from leasehold.api.server.routing import router
from tests.api.harness import Api

_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


async def test_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    reply = await api.get("/openapi.json", token=None)
    assert reply.status == 200
    document = reply.body
    assert document["openapi"].startswith("3.1")
    validate(document)
    shapes = {re.sub(r"{\w+}", "{}", path): path for path in document["paths"]}
    for spec in router.specs:  # routes of one shape (/api/jobs/{id|lease_id}/logs) share a path
        operation = document["paths"][shapes[re.sub(r"{\w+}", "{}", spec.path)]][
            spec.method.lower()]
        assert str(spec.status) in operation["responses"], (spec.method, spec.path)
        if spec.roles:
            assert "security" not in operation or operation["security"], spec.path
        else:
            assert operation["security"] == [], spec.path
    job_spec = document["components"]["schemas"]["JobSpec"]
    assert job_spec["additionalProperties"] is False
    claim = document["paths"]["/api/jobs/claim"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ClaimRequest")
    assert "409" in document["paths"]["/api/jobs/{lease_id}/complete"]["post"]["responses"]


async def test_docs_use_only_local_assets(api: Api) -> None:
    page = await api.get("/docs", token=None)
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    links = _LINK.findall(page.text)
    assert "/docs/static/swagger-ui-bundle.js" in links
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    assert "http" not in page.text
    init = await api.get("/docs/init.js", token=None)
    assert init.status == 200 and "/openapi.json" in init.text and "http" not in init.text
    for link in links:
        asset = await api.get(link, token=None)
        assert asset.status == 200, link
    bundle = await api.get("/docs/static/swagger-ui-bundle.js", token=None)
    assert bundle.status == 200 and "javascript" in bundle.headers["Content-Type"]
    assert len(bundle.text) > 100_000 and "SwaggerUIBundle" in bundle.text


async def test_the_document_states_what_the_server_enforces(api: Api) -> None:
    document = (await api.get("/openapi.json", token=None)).body
    schemas = document["components"]["schemas"]
    assert schemas["TokenRequest"]["properties"]["role"]["enum"] == [
        "admin", "submitter", "viewer", "metrics"]
    assert (await api.post("/api/tokens", {"role": "root", "name": "x"})).status == 400
    # needed only with an admin token, which is no worker: 403 without it, and a worker's
    # claim may leave it out, so the schema does not require it
    assert "worker_id" not in schemas["ClaimRequest"].get("required", [])
    assert "admin token" in schemas["ClaimRequest"]["properties"]["worker_id"]["description"]
    assert (await api.post("/api/jobs/claim", {})).status == 403
    events = {p["name"]: p for p in document["paths"]["/api/events"]["get"]["parameters"]}
    assert not re.match(events["queue"]["schema"]["pattern"], "")
    assert (await api.get("/api/events?queue=")).status == 400
    ticket = re.compile(schemas["TicketRequest"]["properties"]["path"]["pattern"])
    for spec in router.specs:
        concrete = re.sub(r"{\w+}", "x1", spec.path)
        assert bool(ticket.search(concrete)) == spec.sse, spec.path
    bounds = schemas["RateLimit"]["properties"]["per_secs"]
    assert bounds["exclusiveMinimum"] == 0 and bounds["type"] == "number"
    listing = {p["name"]: p for p in document["paths"]["/api/jobs"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert "queued" in listing["status"]["schema"]["enum"]


async def test_allow_lists_the_methods_the_route_serves(api: Api) -> None:
    """A literal segment owns its path: /api/workers/heartbeat is not worker "heartbeat"."""
    document = (await api.get("/openapi.json", token=None)).body
    for path, methods in (("/api/workers/heartbeat", "POST"), ("/api/jobs/claim", "POST"),
                          ("/api/jobs/j1/logs", "GET,POST"), ("/api/workflows/sample", "POST")):
        reply = await api.call("OPTIONS", path)
        assert reply.status == 405 and reply.headers["Allow"] == methods, path
    assert (await api.get("/api/workers/heartbeat")).status == 405
    worker_id = document["paths"]["/api/workers/{id}"]["get"]["parameters"][0]["schema"]
    assert set(worker_id["not"]["enum"]) == {"heartbeat", "register"}
    assert set(document["paths"]["/api/jobs/{lease_id}/logs"]) == {"get", "post"}


async def test_an_undocumented_query_parameter_is_refused_by_name(api: Api) -> None:
    reply = await api.get("/api/jobs", params={"limt": "5"})
    assert reply.status == 400 and "limt" in reply.body["message"], reply.text
    assert "limit" in reply.body["allowed"] and "ticket" not in reply.body["allowed"]
    assert (await api.get("/api/jobs", params={"limit": "5"})).status == 200
    twice = await api.get("/api/jobs?limit=5&limit=6")
    assert twice.status == 400 and "limit" in twice.body["message"], twice.text


def test_two_models_of_one_name_cannot_share_the_document() -> None:
    """A component name is one schema: a second model of that name would silently become the
    body of the first one's routes."""
    first = create_model("Twin", a=(int, ...))
    second = create_model("Twin", b=(str, ...))
    schemas = Schemas()
    schemas.of(first)
    schemas.of(first)
    with pytest.raises(ValueError, match="Twin"):
        schemas.of(second)


def test_a_dict_with_constrained_keys_refuses_other_keys_in_the_document() -> None:
    env = Schemas().of(dict[Annotated[str, Field(pattern="^[A-Z]+$")], int])
    assert env["propertyNames"] == {"pattern": "^[A-Z]+$"}
    assert env["additionalProperties"] == {"type": "integer"}
