"""``create_app()``: the aiohttp application, its middlewares, routes and Redis lifetime."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from api import jobs, leases, logs, metrics, openapi, ops, ui, workers, workflows  # noqa: F401
from api.appkeys import ROUTER, SERVICES, SETTINGS
from api.errors import error_middleware
from api.guard import LIMITER, FailureLimiter, cors_middleware, failure_limit_middleware
from api.middleware import auth_middleware, request_context
from api.routing import router
from api.sse import LIVE_STREAMS, close_live_streams
from scheduler.config import Settings
from scheduler.service import open_services


def package_version() -> str:
    try:
        return version("leasehold")
    except PackageNotFoundError:
        return "0.0.0"


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = await open_services(app[SETTINGS])
    app[SERVICES] = services
    yield
    await services.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[cors_middleware, request_context, failure_limit_middleware,
                     error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[LIMITER] = FailureLimiter(settings.auth_failures_per_minute)
    app[ROUTER] = router
    app[LIVE_STREAMS] = weakref.WeakSet()
    app.on_shutdown.append(close_live_streams)
    app.cleanup_ctx.append(_services_ctx)
    router.install(app)
    openapi.install(app, router, package_version())
    ui.install(app)
    metrics.install(app, package_version())
    return app
