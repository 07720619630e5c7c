"""Maps every failure to the JSON error body in one middleware; never a traceback."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from aiohttp import web

from leasehold.api.server.appkeys import ROUTER
from leasehold.api.server.http import REQUEST_ID, BadRequest
from leasehold.scheduler import errors
from leasehold.scheduler.secrets import SecretsDisabled

log = structlog.get_logger("leasehold.api")

RETRY_AFTER_SECS = "1"

STATUS: dict[type[errors.SchedulerError], int] = {
    errors.InvalidArgument: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotLeaseOwner: 403,
    errors.NotFound: 404,
    errors.LeaseLost: 409,
    errors.InvalidState: 409,
    errors.Conflict: 409,
    errors.JobAlreadyExists: 409,
    errors.RateLimited: 429,
    errors.ScriptContractError: 500,
    SecretsDisabled: 503,
}

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media",
    429: "rate_limited", 503: "unavailable",
}


def error_response(status: int, code: str, message: str, request: web.Request,
                   headers: dict[str, str] | None = None,
                   extra: dict[str, Any] | None = None) -> web.Response:
    body = {"error": code, "message": message, **(extra or {}),
            "request_id": request.get(REQUEST_ID, "")}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers=headers)


def status_of(exc: errors.SchedulerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BadRequest as exc:
        return error_response(400, "invalid_request", exc.message, request,
                              extra={"details": exc.details})
    except errors.SchedulerError as exc:
        status = status_of(exc)
        if status == 500:
            log.error("script_contract_broken", error=exc.message)
            return error_response(500, "internal_error", "internal error", request)
        details = {k: v for k, v in exc.details.items() if k not in ("lease_id",)}
        challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else None  # RFC 9110 §11.6.1
        if isinstance(exc, errors.RateLimited):
            challenge = {"Retry-After": str(exc.retry_after_secs)}
        return error_response(status, exc.code, exc.message, request, headers=challenge,
                              extra=details)
    except errors.BACKEND_ERRORS as exc:
        log.warning("backend_unavailable", error=type(exc).__name__)
        return error_response(503, "unavailable", errors.backend_message(exc), request,
                              headers={"Retry-After": RETRY_AFTER_SECS})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = "request body too large"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if exc.status == 405 and ROUTER in request.app:  # aiohttp lists every template's
            headers = {"Allow": ",".join(request.app[ROUTER].allowed_methods(request.path))}
        return error_response(exc.status, code, message, request, headers=headers)
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return error_response(500, "internal_error", "internal error", request)
