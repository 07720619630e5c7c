"""The web UI at 400 px wide and for assistive technology: no page-wide horizontal scrolling,
the token box on screen, and an accessible name on every control of every view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

CONTROLS = {"button", "link", "textbox", "searchbox", "combobox", "checkbox", "region", "img",
            "listbox", "menuitem", "tab"}


async def unnamed_controls(page: Page) -> list[str]:
    """Controls in Chromium's accessibility tree whose accessible name is empty."""
    cdp = await page.context.new_cdp_session(page)
    tree: dict[str, Any] = await cdp.send("Accessibility.getFullAXTree")
    await cdp.detach()
    missing = []
    for node in tree["nodes"]:
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in CONTROLS:
            continue
        if not str(node.get("name", {}).get("value", "")).strip():
            missing.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return missing


async def seed(http: Http) -> dict[str, Any]:
    job = await http.call("POST", "/api/jobs", body={"command": "make", "required_labels": ["x"]})
    failed = await http.call("POST", "/api/jobs", body={"command": "flaky"})
    await http.call("POST", f"/api/jobs/{failed['id']}/cancel")
    await http.worker("ui-a11y", ["linux"])
    wf = await http.call("POST", "/api/workflows", body={"name": "pipeline", "jobs": [
        {"id": "a", "command": "true"}, {"id": "b", "command": "true", "depends_on": ["a"]}]})
    await http.call("POST", f"/api/workflows/{wf['id']}/run")
    return {"job": job, "workflow": wf}


async def test_every_control_of_every_view_has_an_accessible_name(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    made = await seed(http)
    base = base_url(server)
    await page.goto(base + "/")
    assert await unnamed_controls(page) == []
    await sign_in(page, base, ADMIN)
    await expect(page.get_by_role("button", name="Revoke worker ui-a11y")).to_be_visible()
    await expect(page.get_by_role("button", name=f"Cancel job {made['job']['id']}")).to_be_visible()
    await expect(page.get_by_role("img", name="succeeded and")).to_be_visible()
    views = {"overview": await unnamed_controls(page)}
    await page.goto(base + f"/#/jobs/{made['job']['id']}")
    await expect(page.locator("#why")).to_be_visible()
    views["job"] = await unnamed_controls(page)
    await page.goto(base + "/#/workflows")
    await expect(page.get_by_role("button", name="Run workflow pipeline")).to_be_visible()
    views["workflows"] = await unnamed_controls(page)
    await page.goto(base + f"/#/workflows/{made['workflow']['id']}")
    await page.get_by_role("button", name="Job a: queued").click()
    await expect(page.locator("#wf-job")).to_be_visible()
    views["workflow"] = await unnamed_controls(page)
    await page.goto(base + "/#/jobs/default.missing")
    await expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
    views["missing job"] = await unnamed_controls(page)
    assert views == {name: [] for name in views}
    await page.evaluate("document.body.append(document.createElement('button'))")
    assert len(await unnamed_controls(page)) == 1, "the check would not see an unnamed button"


async def test_readable_at_400_px_with_the_token_box_on_screen(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    made = await seed(http)
    await page.set_viewport_size({"width": 400, "height": 800})
    base = base_url(server)
    await sign_in(page, base, ADMIN)
    await expect(page.locator("#jobs tbody")).to_contain_text(made["job"]["id"])
    for hash_ in ("#/", f"#/jobs/{made['job']['id']}", "#/workflows",
                  f"#/workflows/{made['workflow']['id']}"):
        await page.goto(base + "/" + hash_)
        await page.wait_for_timeout(300)
        width = await page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 400, f"{hash_}: the page scrolls sideways ({width} px)"
        for control in (page.get_by_label("Token", exact=True),
                        page.get_by_role("button", name="Save token")):
            box = await control.bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= 400, (hash_, box)
        await page.mouse.wheel(0, 2000)  # the header (with the token box) stays at the top
        await page.wait_for_timeout(100)
        box = await page.get_by_label("Token", exact=True).bounding_box()
        assert box is not None and 0 <= box["y"] < 200, (hash_, box)
    await page.goto(base + "/#/")
    await expect(page.locator("#jobs tbody")).to_contain_text(made["job"]["id"])
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "narrow-400px")
