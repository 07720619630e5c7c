"""The workflow view in headless Chromium: the DAG in layers from depends_on, statuses that
follow /api/events live, and a job's dependencies' outputs and live log on click."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp.test_utils import TestServer

from tests.e2e import test_ui
from tests.e2e.test_ui import ADMIN, Http, base_url, shot, sign_in

# the browser, the server and the HTTP helper of the UI tests
pytestmark = test_ui.pytestmark
server = test_ui.server
page = test_ui.page
http = test_ui.http

if TYPE_CHECKING:
    from playwright.async_api import Page

DIAMOND = {"name": "diamond", "trigger": "push", "jobs": [
    {"id": "fetch", "command": "echo fetch"},
    {"id": "build", "command": "echo build", "depends_on": ["fetch"]},
    {"id": "lint", "command": "echo lint", "depends_on": ["fetch"]},
    {"id": "ship", "command": "echo ship", "depends_on": ["build", "lint"]},
]}


async def test_the_dag_is_drawn_in_layers_and_follows_events_live(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    await http.call("POST", "/api/workflows", body=DIAMOND)
    token = await http.worker("ui-wf", ["linux"])
    await sign_in(page, base_url(server), ADMIN, "#/workflows")
    await expect(page.locator("#workflows tbody")).to_contain_text("diamond")
    await page.get_by_role("button", name="Run workflow diamond").click()
    await page.get_by_role("link", name="Open workflow diamond").click()
    await expect(page.locator("#wf-stream")).to_have_text("live")

    nodes = {name: page.locator(f".node[data-job='{name}']") for name in
             ("fetch", "build", "lint", "ship")}
    boxes = {name: await node.bounding_box() for name, node in nodes.items()}
    x = {name: box["x"] for name, box in boxes.items() if box}
    assert x["fetch"] < x["build"] == x["lint"] < x["ship"], x
    assert await page.locator("#dag svg path.edge").count() == 4
    await expect(page.get_by_role("button", name="Job fetch: queued")).to_be_visible()

    # the page polls every 30 s: a change within the 5 s wait came from the event stream
    claim = await http.claim("ui-wf", token, ["linux"])
    assert claim["job"]["job_id"] == "fetch"
    lease = claim["lease"]["lease_id"]
    await expect(nodes["fetch"]).to_have_attribute("data-status", "running")
    await http.call("POST", f"/api/jobs/{lease}/complete", token,
                    {"outputs": {"artifact": "src.tar"}})
    await expect(nodes["fetch"]).to_have_attribute("data-status", "success")

    claim = await http.claim("ui-wf", token, ["linux"])
    name = claim["job"]["job_id"]
    lease = claim["lease"]["lease_id"]
    await expect(nodes[name]).to_have_attribute("data-status", "running")
    await nodes[name].click()
    panel = page.locator("#wf-job")
    await expect(panel.get_by_role("heading", name=f"Job {name}")).to_be_focused()
    await expect(panel.locator(".fields")).to_contain_text("Outputs of dependencies")
    await expect(panel.locator(".fields")).to_contain_text("src.tar")
    await expect(panel.locator(".stream-state")).to_have_text("live")
    await http.call("POST", f"/api/jobs/{lease}/logs", token, {"chunks": [
        {"data": "step one\nstep two\n", "stream": "stdout"},
        {"data": "a warning\n", "stream": "stderr"}]})
    log = panel.locator(".log")
    await expect(log.locator(".log-stderr")).to_have_text("a warning\n")
    assert (await log.inner_text()).splitlines()[:3] == ["step one", "step two", "a warning"]
    await shot(page, "workflow")


async def test_the_dag_is_usable_by_keyboard(server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    wf = await http.call("POST", "/api/workflows", body=DIAMOND)
    run = await http.call("POST", f"/api/workflows/{wf['id']}/run")
    await sign_in(page, base_url(server), ADMIN, f"#/workflows/{wf['id']}")
    node = page.get_by_role("button", name="Job lint: queued")
    await node.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#wf-job").get_by_role("heading", name="Job lint")).to_be_focused()
    await page.get_by_role("link", name="Open job page").press("Enter")
    await expect(page.locator(".job-id")).to_have_text(run["jobs"]["lint"])
    await expect(page.locator("#why")).to_contain_text("Waiting on dependencies: fetch.")
