"""Fixtures: the API app with auth on (admin token ADMIN) or off, over the session's Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings
from tests.api.harness import ADMIN, Api, record_route

MakeApi = Callable[..., Awaitable[Api]]
COVERAGE_TEST = "test_every_route_has_a_success_test"
_API_DIR = Path(__file__).parent
_deselected: list[pytest.Item] = []
_modules_at_collection: set[Path] = set()


@pytest.fixture
def make_api(aiohttp_client: AiohttpClient, settings: Settings) -> MakeApi:
    """Builds an app from the test's settings with ``overrides`` and returns an admin Api."""

    async def build(**overrides: Any) -> Api:
        merged: dict[str, Any] = {"admin_token": ADMIN, "auth": True, **overrides}
        app = create_app(settings.model_copy(update=merged))
        app.on_response_prepare.append(record_route)
        client = await aiohttp_client(app)
        return Api(client, ADMIN if merged["auth"] else None)

    return build


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """Auth on; calls as the admin token by default (``api.as_(token)`` for others)."""
    return await make_api()


@pytest.fixture
async def open_api(make_api: MakeApi) -> Api:
    """Auth off (``--no-auth``): a seed 003 client sends no token at all."""
    return await make_api(auth=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The route-coverage check runs last, after every other API test recorded its routes."""
    _modules_at_collection.update(_API_DIR.glob("test_*.py"))
    last = [item for item in items if item.name == COVERAGE_TEST]
    items[:] = [item for item in items if item.name != COVERAGE_TEST] + last


def pytest_deselected(items: list[pytest.Item]) -> None:
    _deselected.extend(item for item in items if _API_DIR in Path(item.path).parents)


def whole_api_suite_selected(session: pytest.Session) -> bool:
    """True when every tests/api module ran with nothing deselected (else coverage is partial)."""
    if _deselected:
        return False
    ran = {Path(item.path) for item in session.items}
    return all(path in ran for path in _modules_at_collection)
