"""/openapi.json is a valid OpenAPI 3.1 document of every route; /docs needs no CDN."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from leasehold.api.server.routing import router
from tests.api.harness import Api

_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


async def test_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    reply = await api.get("/openapi.json", token=None)
    assert reply.status == 200
    document = reply.body
    assert document["openapi"].startswith("3.1")
    validate(document)
    for spec in router.specs:
        operation = document["paths"][spec.path][spec.method.lower()]
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
