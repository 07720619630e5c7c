"""The web UI in headless Chromium: sign-in messages, a job page with its live log (line breaks,
attempt markers, stderr), and the view of a job that does not exist."""

from __future__ import annotations

import importlib.util
import os
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
# Set to a directory (e.g. docs/ui) to save a screenshot of each view the tests reach.
SCREENSHOTS = os.environ.get("LEASEHOLD_UI_SCREENSHOTS", "")
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
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert errors == [], f"script errors in the page: {errors}"
        finally:
            await browser.close()


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, base_url(server))


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class Http:
    """JSON calls to the server under test, as one token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, token: str = ADMIN, body: Any = None,
                   status: int | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=body,
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
            text = await resp.text()
            if status is None:
                assert resp.status < 300, f"{method} {path}: {resp.status} {text}"
            else:
                assert resp.status == status, f"{method} {path}: {resp.status} {text}"
            return await resp.json()

    async def token(self, role: str) -> str:
        issued = await self.call("POST", "/api/tokens", body={"role": role, "name": f"ui {role}"})
        token: str = issued["token"]
        return token

    async def worker(self, worker_id: str, labels: list[str]) -> str:
        worker = await self.call("POST", "/api/workers/register",
                                 body={"worker_id": worker_id, "labels": labels})
        token: str = worker["worker_token"]
        return token

    async def claim(self, worker_id: str, token: str, labels: list[str],
                    queue: str = "default") -> dict[str, Any]:
        claim: dict[str, Any] = await self.call(
            "POST", "/api/jobs/claim", token,
            {"worker_id": worker_id, "labels": labels, "queues": [queue], "wait_secs": 0})
        return claim


async def sign_in(page: Page, base: str, token: str, hash_: str = "#/") -> None:
    """Opens the UI and saves the token in its token box, as a user would."""
    from playwright.async_api import expect

    await page.goto(base + "/" + hash_)
    await page.get_by_label("Token", exact=True).fill(token)
    await page.get_by_role("button", name="Save token").click()
    await expect(page.locator("#whoami")).to_contain_text("Signed in as")


async def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:  # playwright creates the directory
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


async def test_no_token_and_a_wrong_token_get_different_messages(
        server: TestServer, page: Page) -> None:
    from playwright.async_api import expect

    await page.goto(base_url(server) + "/")
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("Sign in: enter an API token")
    await page.get_by_label("Token", exact=True).fill("lha_not-a-real-token")
    await page.get_by_role("button", name="Save token").click()
    await expect(notice).to_contain_text("That token was refused (invalid or revoked)")
    await expect(page.locator("#whoami")).to_have_text("")


async def test_a_missing_job_shows_not_found(server: TestServer, page: Page) -> None:
    from playwright.async_api import expect

    await sign_in(page, base_url(server), ADMIN, "#/jobs/default.no-such-job")
    await expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
    await expect(page.locator(".missing-id")).to_have_text("default.no-such-job")
    assert await page.locator(".job-id").count() == 0, "the job page template still shows"


async def test_job_page_tails_logs_with_line_breaks_attempt_markers_and_stderr(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    job = await http.call("POST", "/api/jobs", body={
        "command": "make test", "retry_policy": {"max_retries": 2, "backoff": "None"}})
    worker_token = await http.worker("ui-w1", ["linux"])
    lease = (await http.claim("ui-w1", worker_token, ["linux"]))["lease"]["lease_id"]

    await sign_in(page, base_url(server), ADMIN)
    await expect(page.locator("#workers tbody")).to_contain_text("ui-w1")
    await page.locator("#jobs a", has_text=job["id"]).click()
    await expect(page.locator(".job-status")).to_have_text("running")
    await expect(page.locator(".fields")).to_contain_text("make test")
    await expect(page.locator(".fields dt", has_text="Enqueued")).to_be_visible()
    assert await page.locator(".fields dt", has_text="enqueued_at_ms").count() == 0
    await expect(page.locator("#stream-state")).to_have_text("live")

    await http.call("POST", f"/api/jobs/{lease}/logs", worker_token, {"chunks": [
        {"data": "compiling 12 files\nlinking\n", "stream": "stdout"},
        {"data": "warning: deprecated flag\n", "stream": "stderr"},
        {"data": "<b>html</b>\n", "stream": "stdout"},
    ]})
    log = page.locator("#log")
    stdout = log.locator("span", has_text="compiling 12 files")
    stderr = log.locator("span", has_text="warning: deprecated flag")
    await expect(stdout).to_have_class(re.compile(r"\blog-stdout\b"))
    await expect(stderr).to_have_class(re.compile(r"\blog-stderr\b"))
    colors = [await span.evaluate("node => getComputedStyle(node).color")
              for span in (stdout, stderr)]
    assert colors[0] != colors[1], "stderr is not styled apart from stdout"
    await expect(log.locator("span", has_text="<b>html</b>")).to_have_text("<b>html</b>")
    assert await log.locator("b").count() == 0, "log data was parsed as HTML"
    lines = (await log.inner_text()).splitlines()
    assert lines[:4] == ["compiling 12 files", "linking", "warning: deprecated flag",
                         "<b>html</b>"], lines

    failed = await http.call("POST", f"/api/jobs/{lease}/fail", worker_token,
                             {"error": "tests failed", "retryable": True})
    assert failed["will_retry"], failed
    lease = (await http.claim("ui-w1", worker_token, ["linux"]))["lease"]["lease_id"]
    await http.call("POST", f"/api/jobs/{lease}/logs", worker_token, {"chunks": [
        {"data": "second try\n", "stream": "stdout"}]})
    marker = log.locator(".log-marker")
    await expect(marker).to_have_text(re.compile(r"attempt 2"))
    await expect(log.locator("span", has_text="second try")).to_be_visible()
    lines = (await log.inner_text()).splitlines()
    at = lines.index("second try")
    assert "attempt 2" in lines[at - 1], lines

    await http.call("POST", f"/api/jobs/{lease}/complete", worker_token,
                    {"outputs": {"tests": 42}})
    await expect(page.locator("#log-end")).to_have_text("Job finished: success")
    await expect(page.locator("#stream-state")).to_have_text("ended")
    await expect(page.locator(".job-status")).to_have_text("success")
    assert await page.locator(".fields dt", has_text="Name in workflow").count() == 0
    await shot(page, "job")
