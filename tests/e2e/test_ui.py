"""The web UI in headless Chromium: token entry, job list, a live log tail over SSE, end status."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).parent / "screenshots" / "job_page.png"
ADMIN = "lha_ui-test-admin-3b8e61d0c4f2a957"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]
WAIT_MS = 5000


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    """The API with auth on, on a real port the browser can reach."""
    app = create_app(settings.model_copy(update={"auth": True, "admin_token": ADMIN}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=LAUNCH_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            await browser.close()


class Http:
    """JSON calls to the server under test, as one token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, token: str = ADMIN, body: Any = None) -> Any:
        async with self.session.request(method, self.base + path, json=body,
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
            text = await resp.text()
            assert resp.status < 300, f"{method} {path}: {resp.status} {text}"
            return await resp.json()


async def test_job_page_tails_logs_live(server: TestServer, page: Page) -> None:
    from playwright.async_api import expect

    base = str(server.make_url("")).rstrip("/")
    browser_errors: list[str] = []
    page.on("pageerror", lambda exc: browser_errors.append(str(exc)))
    async with aiohttp.ClientSession() as session:
        http = Http(session, base)
        job = await http.call("POST", "/api/jobs", body={"command": "make test"})
        worker = await http.call("POST", "/api/workers/register",
                                 body={"worker_id": "ui-w1", "labels": ["linux"]})
        worker_token: str = worker["worker_token"]
        claim = await http.call("POST", "/api/jobs/claim", worker_token,
                                {"worker_id": "ui-w1", "labels": ["linux"]})
        lease = claim["lease"]["lease_id"]

        await page.goto(base + "/")
        await expect(page.locator("#notice")).to_contain_text("Unauthorized")
        await page.fill("#token", ADMIN)
        await page.click("#auth button")
        await expect(page.locator("#queues tbody")).to_contain_text("default")
        await expect(page.locator("#workers tbody")).to_contain_text("ui-w1")
        await page.locator("#jobs a", has_text=job["id"]).click()
        await expect(page.locator(".job-status")).to_have_text("running")
        await expect(page.locator(".fields")).to_contain_text("make test")
        await expect(page.locator("#stream-state")).to_have_text("live")

        await http.call("POST", f"/api/jobs/{lease}/logs", worker_token, {"chunks": [
            {"data": "compiling 12 files\n", "stream": "stdout"},
            {"data": "warning: deprecated flag\n", "stream": "stderr"},
            {"data": "<b>html</b>\n", "stream": "stdout"},
        ]})
        stdout = page.locator("#log span", has_text="compiling 12 files")
        stderr = page.locator("#log span", has_text="warning: deprecated flag")
        await expect(stdout).to_have_class(re.compile(r"\blog-stdout\b"))
        await expect(stderr).to_have_class(re.compile(r"\blog-stderr\b"))
        colors = [await span.evaluate("node => getComputedStyle(node).color")
                  for span in (stdout, stderr)]
        assert colors[0] != colors[1], "stderr is not styled apart from stdout"
        html_line = page.locator("#log span", has_text="<b>html</b>")
        await expect(html_line).to_have_text("<b>html</b>")
        assert await page.locator("#log b").count() == 0, "log data was parsed as HTML"

        await http.call("POST", f"/api/jobs/{lease}/complete", worker_token,
                        {"outputs": {"tests": 42}})
        await expect(page.locator("#log-end")).to_have_text("Job finished: success")
        await expect(page.locator("#stream-state")).to_have_text("ended")
        await expect(page.locator(".job-status")).to_have_text("success")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert browser_errors == []
