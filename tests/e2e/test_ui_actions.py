"""The web UI's actions in headless Chromium: retry and cancel a job, pause and resume a queue,
drain, undrain and revoke a worker; a viewer sees no buttons and the server's 403 is shown;
filters, find by id, why a queued job waits, and the last hour's chart."""

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


def accept_dialogs(page: Page, seen: list[str]) -> None:
    async def accept(dialog: object) -> None:
        seen.append(dialog.message)  # type: ignore[attr-defined]
        await dialog.accept()  # type: ignore[attr-defined]

    page.on("dialog", accept)


async def test_cancel_asks_first_then_retry_requeues(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    job = await http.call("POST", "/api/jobs", body={"command": "sleep 60"})
    dialogs: list[str] = []
    accept_dialogs(page, dialogs)
    await sign_in(page, base_url(server), ADMIN)
    await page.get_by_role("button", name=f"Cancel job {job['id']}").click()
    await expect(page.locator("#notice")).to_contain_text(f"Cancel job {job['id']}: done")
    assert dialogs and "Cancel job" in dialogs[0], dialogs
    assert (await http.call("GET", f"/api/jobs/{job['id']}"))["status"] == "cancelled"

    await page.get_by_role("button", name=f"Retry job {job['id']}").click()
    await expect(page.locator("#notice")).to_contain_text(f"Retry job {job['id']}: done")
    assert (await http.call("GET", f"/api/jobs/{job['id']}"))["status"] == "queued"
    assert len(dialogs) == 1, "retry is not destructive and asks nothing"
    await expect(page.get_by_role("button", name=f"Cancel job {job['id']}")).to_be_visible()


async def test_dismissing_the_confirm_cancels_nothing(
        server: TestServer, page: Page, http: Http) -> None:
    job = await http.call("POST", "/api/jobs", body={"command": "sleep 60"})
    page.on("dialog", lambda dialog: dialog.dismiss())
    await sign_in(page, base_url(server), ADMIN)
    await page.get_by_role("button", name=f"Cancel job {job['id']}").click()
    await page.wait_for_timeout(300)
    assert (await http.call("GET", f"/api/jobs/{job['id']}"))["status"] == "queued"


async def test_pause_and_resume_a_queue(server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    await http.call("POST", "/api/jobs", body={"command": "true"})
    await sign_in(page, base_url(server), ADMIN)
    await page.get_by_role("button", name="Pause queue default").click()
    await expect(page.get_by_role("button", name="Resume queue default")).to_be_visible()
    await expect(page.locator("#queues tbody")).to_contain_text("Paused")
    assert (await http.call("GET", "/api/queues/default"))["paused"] is True
    await page.get_by_role("button", name="Resume queue default").click()
    await expect(page.get_by_role("button", name="Pause queue default")).to_be_visible()
    assert (await http.call("GET", "/api/queues/default"))["paused"] is False


async def test_drain_undrain_and_revoke_a_worker(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    worker_token = await http.worker("ui-drain", ["linux"])
    dialogs: list[str] = []
    accept_dialogs(page, dialogs)
    await sign_in(page, base_url(server), ADMIN)
    await page.get_by_role("button", name="Drain worker ui-drain").click()
    await expect(page.get_by_role("button", name="Undrain worker ui-drain")).to_be_visible()
    assert (await http.call("GET", "/api/workers/ui-drain"))["status"] == "draining"
    await page.get_by_role("button", name="Undrain worker ui-drain").click()
    await expect(page.get_by_role("button", name="Drain worker ui-drain")).to_be_visible()
    assert (await http.call("GET", "/api/workers/ui-drain"))["status"] != "draining"

    await page.get_by_role("button", name="Revoke worker ui-drain").click()
    await expect(page.locator("#notice")).to_contain_text("Revoke worker ui-drain: done")
    assert dialogs and "Revoke worker ui-drain" in dialogs[-1]
    await http.call("POST", "/api/workers/ui-drain/heartbeat", worker_token, {}, status=401)


async def test_a_viewer_sees_no_actions_and_the_servers_403_is_shown(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    job = await http.call("POST", "/api/jobs", body={"command": "sleep 60"})
    await http.worker("ui-view", ["linux"])
    viewer = await http.token("viewer")
    await sign_in(page, base_url(server), viewer)
    await expect(page.locator("#whoami")).to_have_text("Signed in as viewer")
    await expect(page.locator("#jobs tbody")).to_contain_text(job["id"])
    await expect(page.locator("#workers tbody")).to_contain_text("ui-view")
    assert await page.locator("main button.danger, main .actions button").count() == 0
    await page.locator("#jobs a", has_text=job["id"]).click()
    await expect(page.locator(".job-status")).to_have_text("queued")
    assert await page.locator(".job-actions button").count() == 0

    # A page opened as admin whose token is then swapped for the viewer's: the server decides.
    await sign_in(page, base_url(server), ADMIN)
    button = page.get_by_role("button", name="Pause queue default")
    await expect(button).to_be_visible()
    await page.evaluate("token => localStorage.setItem('leasehold.token', token)", viewer)
    await button.click()
    await expect(page.locator("#notice")).to_contain_text("Not allowed: role viewer may not")
    assert (await http.call("GET", "/api/queues/default"))["paused"] is False


async def test_filter_by_status_and_find_by_id(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    kept = await http.call("POST", "/api/jobs", body={"command": "stays queued"})
    gone = await http.call("POST", "/api/jobs", body={"command": "gets cancelled"})
    await http.call("POST", f"/api/jobs/{gone['id']}/cancel")
    await sign_in(page, base_url(server), ADMIN)
    jobs = page.locator("#jobs tbody")
    await expect(jobs).to_contain_text(kept["id"])
    await expect(jobs).to_contain_text(gone["id"])
    await page.get_by_label("Status").select_option("cancelled")
    await expect(jobs).not_to_contain_text(kept["id"])
    await expect(jobs).to_contain_text(gone["id"])
    await page.get_by_label("Status").select_option("queued")
    await expect(jobs).not_to_contain_text(gone["id"])
    await expect(jobs).to_contain_text(kept["id"])

    await page.get_by_label("Job id").fill(gone["id"])
    await page.get_by_label("Job id").press("Enter")
    await expect(page.locator(".job-id")).to_have_text(gone["id"])
    await expect(page.locator(".job-status")).to_have_text("cancelled")


async def test_a_queued_job_says_why_it_waits(server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    await http.worker("ui-linux", ["linux"])
    gpu = await http.call("POST", "/api/jobs", body={"command": "train",
                                                     "required_labels": ["gpu"]})
    later = await http.call("POST", "/api/jobs", body={"command": "later", "delay_secs": 3600})
    ready = await http.call("POST", "/api/jobs", body={"command": "ready",
                                                       "required_labels": ["linux"]})
    await sign_in(page, base_url(server), ADMIN, f"#/jobs/{gpu['id']}")
    why = page.locator("#why")
    await expect(why).to_contain_text("No online worker has the labels gpu")
    await shot(page, "job-waiting")
    await page.goto(base_url(server) + f"/#/jobs/{later['id']}")
    await expect(why).to_contain_text("Delayed: it becomes claimable at")
    await page.goto(base_url(server) + f"/#/jobs/{ready['id']}")
    await expect(why).to_contain_text("Ready: waiting for a worker to claim it")

    token = await http.worker("ui-retry", ["linux"])
    await http.call("POST", f"/api/jobs/{ready['id']}/cancel")
    flaky = await http.call("POST", "/api/jobs", body={"command": "flaky", "retry_policy": {
        "max_retries": 3, "backoff": {"Fixed": {"delay_secs": 3600}}}})
    lease = (await http.claim("ui-retry", token, ["linux"]))["lease"]["lease_id"]
    await http.call("POST", f"/api/jobs/{lease}/fail", token, {"error": "x", "retryable": True})
    await page.goto(base_url(server) + f"/#/jobs/{flaky['id']}")
    await expect(why).to_contain_text("Backing off after a failed attempt")


async def test_the_chart_counts_the_last_hours_successes_and_failures(
        server: TestServer, page: Page, http: Http) -> None:
    from playwright.async_api import expect

    token = await http.worker("ui-chart", ["linux"])
    for outcome in ("complete", "complete", "fail"):
        await http.call("POST", "/api/jobs", body={"command": outcome})
        lease = (await http.claim("ui-chart", token, ["linux"]))["lease"]["lease_id"]
        body: dict[str, Any] = {"outputs": {}} if outcome == "complete" else {"error": "boom"}
        await http.call("POST", f"/api/jobs/{lease}/{outcome}", token, body)
    await sign_in(page, base_url(server), ADMIN)
    chart = page.get_by_role("img", name="2 succeeded and 1 failed in the last 60 minutes")
    await expect(chart).to_be_visible()
    assert await page.locator("#chart rect.bar-ok").count() >= 1
    assert await page.locator("#chart rect.bar-bad").count() >= 1
    await http.call("POST", "/api/jobs", body={"command": "make release"})
    await page.reload()
    await expect(page.locator("#jobs tbody")).to_contain_text("make release")
    await shot(page, "overview")
