"""Builds the OpenAPI 3.1 document from the route table and the pydantic models; serves /docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import TypeAdapter

from leasehold.api.server.http import body_optional
from leasehold.api.server.routing import PUBLIC, REGISTRATION, Param, Router, RouteSpec, shadows
from leasehold.api.wire import ErrorBody
from leasehold.scheduler.artifacts import NAME as ARTIFACT_NAME
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.secrets import SECRET_NAME

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"{(\w+)}")
_DESCRIPTIONS = {
    400: "Invalid input", 401: "Missing or invalid token", 403: "Wrong role or not your lease",
    404: "Unknown id", 405: "The path belongs to a route without this method",
    409: "Lease lost or state conflict", 413: "Body too large",
    507: "Storage quota exceeded",
    429: "Rate limited", 503: "Redis unavailable or out of memory",
}


class Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, annotation: Any, mode: Literal["validation", "serialization"] = "serialization"
           ) -> dict[str, Any]:
        """A schema for ``annotation``: a $ref for models (kept in components), else inline."""
        schema: dict[str, Any] = _standard(
            TypeAdapter(annotation).json_schema(ref_template=REF, mode=mode))
        for name, component in schema.pop("$defs", {}).items():
            self._keep(name, component)
        title = getattr(annotation, "__name__", None)
        if isinstance(annotation, type) and title and "properties" in schema:
            self._keep(title, schema)
            return {"$ref": REF.format(model=title)}
        return schema

    def _keep(self, name: str, schema: dict[str, Any]) -> None:
        """Two different schemas under one name would make one route's body another's."""
        known = self.components.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"two different schemas are named {name}: rename one model")


# One server-sent event as a client parses it.
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}}}
_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}
_NUMBER = [{"type": "integer"}, {"type": "number"}]


def _standard(schema: Any) -> Any:
    """Pydantic leaves a bound on a union (``int | float`` seconds) as ``gt``/``le``, which JSON
    Schema ignores: they become the standard keywords, and ``int | float`` one number."""
    if isinstance(schema, list):
        return [_standard(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {_BOUNDS.get(key, key) if isinstance(value, int | float) else key: _standard(value)
           for key, value in schema.items()}
    if out.get("anyOf") == _NUMBER:
        del out["anyOf"]
        out["type"] = "number"
    pattern_props = out.get("patternProperties")
    if (isinstance(pattern_props, dict) and len(pattern_props) == 1
            and "additionalProperties" not in out and "properties" not in out):
        # a dict with constrained keys: pydantic says "keys like this have this value", which
        # lets any other key through; the server refuses other keys, and now the document too
        (pattern, value), = pattern_props.items()
        del out["patternProperties"]
        out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
        out["additionalProperties"] = value
    return out


def _operation(spec: RouteSpec, doc_path: str, router: Router, schemas: Schemas
               ) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": spec.handler.__name__,
        "tags": [spec.tag],
        "responses": {},
    }
    params = [{"name": name, "in": "path", "required": True, "schema": schema}
              for name, schema in _path_params(doc_path, spec, router)]
    for name, given in spec.query.items():
        param = given if isinstance(given, Param) else Param(given)
        params.append({"name": name, "in": param.where, "required": param.required,
                       "description": param.text, "schema": param.schema})
    if params:
        op["parameters"] = params
    if spec.body is not None:
        body_schema = {"schema": schemas.of(spec.body, "validation")}
        op["requestBody"] = {"required": not body_optional(spec.body), "content": {
            "application/json": body_schema,
            **({"application/yaml": body_schema} if spec.yaml_body else {})}}
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    if spec.raw_body:
        op["requestBody"] = {"required": False, "content": binary, "description": (
            "Raw bytes, streamed (no body stores an empty artifact). Any Content-Type is "
            "accepted, not only application/octet-stream; an artifact keeps the one it was "
            "sent with.")}
    ok: dict[str, Any] = {"description": "Success"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": schemas.of(spec.response)}}
        if spec.event_stream:
            ok["content"]["text/event-stream"] = {"schema": _SSE_EVENT}
    elif spec.raw_response:
        ok = {"description": "The stored bytes, in the Content-Type they were stored with",
              "content": {**binary, "*/*": {}}}
    for status in (spec.status, *spec.also):
        op["responses"][str(status)] = ok
    error_ref = schemas.of(ErrorBody)
    implied = _implied_errors(spec)
    if any(shadows(other.path, spec.path) for other in router.specs):
        implied.add(405)  # a path a more specific route owns (GET /api/workers/heartbeat)
    for status in sorted(set(spec.errors) | implied):
        op["responses"][str(status)] = {
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": error_ref}}}
    if spec.roles == PUBLIC:
        op["security"] = []
    else:
        roles = [r for r in spec.roles if r != REGISTRATION]
        op["description"] = "Roles: " + ", ".join(roles) + (
            " (or a registration token)" if REGISTRATION in spec.roles else "")
    return op


# Path parameters the server checks by shape (anything else is an id: unknown ids are 404).
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "queue": {"type": "string", "pattern": QUEUE_NAME.pattern},
    "name": {"type": "string", "pattern": ARTIFACT_NAME.pattern},
    "secret": {"type": "string", "pattern": SECRET_NAME.pattern},
}


def _path_params(doc_path: str, spec: RouteSpec, router: Router
                 ) -> list[tuple[str, dict[str, Any]]]:
    """Each parameter of ``doc_path`` with its schema; a segment that a more specific route
    owns (``/api/workers/heartbeat`` for ``/api/workers/{id}``) is not a value of it."""
    segments = spec.path.strip("/").split("/")
    names = dict(zip(_PARAM.findall(spec.path), _PARAM.findall(doc_path), strict=True))
    found = []
    for index, segment in enumerate(segments):
        match = _PARAM.fullmatch(segment)
        if match is None:
            continue
        schema = dict(PATH_SCHEMAS.get(match.group(1), {"type": "string", "minLength": 1}))
        owned = sorted({other.path.strip("/").split("/")[index] for other in router.specs
                        if shadows(other.path, spec.path)})
        if owned:
            schema["not"] = {"enum": owned}
        found.append((names[match.group(1)], schema))
    return found


def _implied_errors(spec: RouteSpec) -> set[int]:
    """Statuses a middleware can answer on this route whatever its handler does: a body can be
    malformed or too large, a token missing or of the wrong role, an address can be rate limited
    after bad tokens, and Redis can be down or full."""
    implied = {429}
    if spec.body is not None:
        implied |= {400, 413}
    if spec.roles:
        implied |= {401, 403}
    if spec.path != "/healthz":
        implied.add(503)
    return implied


def build(router: Router, version: str) -> dict[str, Any]:
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, str] = {}  # /api/jobs/{}/logs -> the first template of that shape
    for spec in router.specs:
        doc_path = shapes.setdefault(_PARAM.sub("{}", spec.path), spec.path)
        paths.setdefault(doc_path, {})[spec.method.lower()] = _operation(
            spec, doc_path, router, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Leasehold", "version": version,
                 "description": "Lease-based job scheduler over Redis."},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Leasehold API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
DOCS_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#ui'});\n"


def swagger_static() -> Path | None:
    """Swagger UI's files from the openapi-ui-bundles package (no CDN)."""
    try:
        from openapi_ui_bundles import swagger_ui
    except ImportError:
        return None
    return Path(swagger_ui.static_path)


def install(app: web.Application, router: Router, version: str) -> None:
    document = build(router, version)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    async def docs_init(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_INIT, content_type="application/javascript")

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/init.js", docs_init)
    static = swagger_static()
    if static is not None:
        app.router.add_static("/docs/static", static)
