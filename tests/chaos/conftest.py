"""Fixtures: a ``Lab`` that owns every process a chaos test starts and kills them at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chaos.fleet import Lab


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    owned = Lab(tmp_path)
    try:
        yield owned
    finally:
        await owned.aclose()
