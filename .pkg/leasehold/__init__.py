"""Leasehold: a Redis-backed, lease-based job scheduler service.

The repository's folders map into this one import package: ``scheduler/`` is
``leasehold.scheduler``, ``api/`` is ``leasehold.api`` and ``lua/`` is ``leasehold/lua``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leasehold")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
