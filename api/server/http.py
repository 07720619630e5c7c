"""Request parsing and JSON responses shared by every handler."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import orjson
import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ValidationError

from leasehold.scheduler.auth import Principal
from leasehold.scheduler.errors import InvalidArgument
from leasehold.scheduler.models import JobStatus
from leasehold.scheduler.rawjson import RawJson, integral, loads_keeping

M = TypeVar("M", bound=BaseModel)
PRINCIPAL = web.RequestKey("principal", Principal)
REGISTRATION_TOKEN = web.RequestKey("registration_token", str)
REQUEST_ID = web.RequestKey("request_id", str)


class BadRequest(Exception):
    """A body or query that failed validation; ``details`` are pydantic's error list."""

    def __init__(self, message: str, details: list[Any]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def validation_details(exc: ValidationError) -> list[Any]:
    """Pydantic errors without the offending input (it may be huge or secret)."""
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


@functools.cache
def body_optional(model: type[BaseModel]) -> bool:
    """Whether a request may leave out a body of ``model``: when its schema requires nothing
    (no required field, no "one of these" or "if, else" rule); the document says so from the
    same schema."""
    schema = model.model_json_schema(mode="validation")
    return not schema.get("required") and not any(k in schema for k in ("anyOf", "oneOf", "if"))


async def read_model(request: web.Request, model: type[M], optional: bool = False) -> M:
    """The body validated as ``model`` in strict mode (no ``true`` or ``"5"`` for a number, no
    ``5.5`` for an integer); an absent body is ``model()`` when the schema requires nothing.

    A model with a ``raw_json_fields`` class attribute keeps those members (payload, metadata,
    outputs) as the exact JSON text of the body: validated here, never re-encoded.
    """
    raw = await request.read()
    if not raw.strip() and (optional or body_optional(model)):
        return model()
    keep: frozenset[str] | None = getattr(model, "raw_json_fields", None)
    try:
        if keep is not None:
            return model.model_validate(integral(_decode_keeping(raw, keep)), strict=True)
        try:
            decoded = pydantic_core.from_json(raw, allow_inf_nan=False)
        except ValueError:  # not JSON: pydantic's own error names the place
            if b"NaN" in raw or b"Infinity" in raw:
                _refuse_non_finite(raw)
            return model.model_validate_json(raw, strict=True)
        return model.model_validate(integral(decoded), strict=True)
    except ValidationError as exc:
        raise BadRequest(f"invalid request body for {model.__name__}",
                         validation_details(exc)) from None


def _decode_keeping(raw: bytes, keep: frozenset[str]) -> Any:
    """The body with ``keep`` members as their text, after the same checks as any other body
    (valid UTF-8 and JSON, no NaN or Infinity, no lone surrogate, bounded nesting)."""
    try:
        pydantic_core.from_json(raw, allow_inf_nan=False)
        return loads_keeping(raw, keep)
    except ValueError as exc:  # also UnicodeDecodeError and json.JSONDecodeError
        raise BadRequest(f"invalid JSON: {exc}", [
            {"loc": [], "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]) from None


def _refuse_non_finite(raw: bytes) -> None:
    """NaN and Infinity are not JSON; pydantic would accept them in a free-form value (payload,
    metadata, outputs) and storing them would silently turn them into null."""
    try:
        pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise BadRequest("invalid JSON: NaN and Infinity are not JSON numbers", [
            {"loc": [], "msg": str(exc), "type": "json_invalid"}]) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    return int(_query_number(request, name, default, low, high, int, "an integer"))


def query_float(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    return _query_number(request, name, default, low, high, float, "a number")


def _query_number(request: web.Request, name: str, default: float, low: float, high: float,
                  kind: type[int] | type[float], noun: str) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidArgument(f"query parameter {name} must be {noun}") from None
    if not low <= value <= high:
        raise InvalidArgument(f"query parameter {name} must be in {low}..{high}")
    return value


def query_status(request: web.Request) -> JobStatus | None:
    """The ``status`` query parameter as a job status, or None when absent."""
    raw = request.query.get("status")
    if raw is None:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        raise InvalidArgument(
            "status must be one of " + ", ".join(s.value for s in JobStatus)) from None


def principal(request: web.Request) -> Principal:
    found: Principal = request[PRINCIPAL]
    return found


def respond(value: Any, status: int = 200) -> web.Response:
    """JSON of a model, a list of models, a dict or ``None`` (a bare ``null``). Raw JSON values
    (payload, metadata, outputs) are embedded as the exact text that was stored."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    body = orjson.dumps(value, default=_default)
    return web.Response(body=body, status=status, content_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.Fragment(value.text)
    if isinstance(value, BaseModel):
        return value.model_dump()
    raise TypeError(f"cannot serialize {type(value).__name__}")
