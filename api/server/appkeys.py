"""Every typed ``web.AppKey`` of the application."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.server.routing import Router
from leasehold.scheduler.config import Settings
from leasehold.scheduler.service import Services

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
ROUTER = web.AppKey("router", Router)
