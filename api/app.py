"""``create_app()``: the aiohttp application, its middlewares, routes and Redis lifetime."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator

from aiohttp import hdrs, web

from leasehold import __version__
from leasehold.api.routes import (  # noqa: F401
    artifacts,
    console,
    jobs,
    leases,
    logs,
    ops,
    results,
    schedules,
    secrets,
    ui,
    workers,
    workflows,
)
from leasehold.api.routes.compat import andera, stella, task_tracker, trellis  # noqa: F401
from leasehold.api.server import metrics, openapi, shutdown
from leasehold.api.server.appkeys import ROUTER, SERVICES, SETTINGS
from leasehold.api.server.errors import error_middleware
from leasehold.api.server.guard import (
    LIMITER,
    FailureLimiter,
    cors_middleware,
    failure_limit_middleware,
)
from leasehold.api.server.middleware import auth_middleware, request_context
from leasehold.api.server.routing import router
from leasehold.api.server.sse import LIVE_RESPONSES, LIVE_STREAMS
from leasehold.scheduler.config import Settings
from leasehold.scheduler.service import open_services


def package_version() -> str:
    return __version__


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = await open_services(app[SETTINGS])
    app[SERVICES] = services
    yield
    await services.close()


async def _server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp would announce its own and Python's versions to every client."""
    response.headers[hdrs.SERVER] = "leasehold"


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
    app[LIVE_RESPONSES] = weakref.WeakSet()
    app.on_response_prepare.append(_server_header)
    shutdown.install(app)  # at shutdown: readiness fails, waiting claims and streams end
    app.cleanup_ctx.append(_services_ctx)
    router.install(app)
    openapi.install(app, router, package_version())
    ui.install(app)
    metrics.install(app, package_version())
    return app
