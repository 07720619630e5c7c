"""Every typed ``web.AppKey`` of the application."""

from __future__ import annotations

from aiohttp import web

from api.routing import Router
from scheduler.config import Settings
from scheduler.service import Services

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
ROUTER = web.AppKey("router", Router)
