"""The web console in a real browser (Debian's Chromium under Playwright) against a real daemon.

Nothing is mocked: the daemon is a subprocess with keys on, the executor that
waits for a decision is a thread blocked in a real HTTP call, and the page
signs in with real keys. Chromium is the system's (/usr/bin/chromium, the
`chromium` package); Playwright never downloads a browser. CONSOLE_SHOTS=DIR
also saves a screenshot of each view there (docs/console-*.png are made so).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import importlib
import json
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and os.environ.get("CI") != "true",
    reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)",
)
# Under CI the browser tests must run: a missing playwright fails the import, not skips.
playwright_api = (importlib.import_module("playwright.async_api") if os.environ.get("CI") == "true"
                  else pytest.importorskip("playwright.async_api"))
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 10_000


def request(url: str, method: str, path: str, key: str, body: Any = None,
            timeout: float = 30) -> tuple[int, Any]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json", "X-API-Key": key})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


class Fleet:
    """A daemon with keys on, and a key of each role made over HTTP by the first admin key."""

    def __init__(self, daemon: Daemon, admin: str) -> None:
        self.daemon, self.url = daemon, daemon.url
        self.keys = {"admin": admin}
        for role in ("executor", "leader", "operator"):
            status, made = request(self.url, "POST", "/api/keys", admin,
                                   {"role": role, "name": f"{role}-1"})
            assert status == 201, made
            self.keys[role] = made["key"]

    def call(self, role: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return request(self.url, method, path, self.keys[role], body)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with Daemon(tmp_path / "clawguard.db", auth_mode="keys") as daemon:
        admin = (tmp_path / "clawguard-admin.key").read_text().strip()
        yield Fleet(daemon, admin)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Any, fleet: Fleet, role: str, phone: bool = False) -> Any:
    """A fresh page (its own sessionStorage) signed in with a key of `role`."""
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 860}
    context = await browser.new_context(viewport=size)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    page.errors = errors
    await page.goto(fleet.url + "/console")
    await page.fill("#key", fleet.keys[role])
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#live.on")  # the event stream is open
    return page


async def shot(page: Any, name: str) -> None:
    folder = os.environ.get("CONSOLE_SHOTS")
    if folder:
        await page.screenshot(path=str(Path(folder) / f"console-{name}.png"), full_page=True)


async def test_a_parked_delegation_appears_live_and_approving_it_answers_the_executor(
    fleet: Fleet, browser: Any
) -> None:
    page = await signed_in(browser, fleet, "leader")
    await page.wait_for_selector("#approvals-empty:not([hidden])")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        parked = pool.submit(fleet.call, "executor", "POST", "/api/governance/delegation-approval",
                             {"leaderAgentId": "planner-7", "kind": "code",
                              "targetAgentName": "coder-2", "task": "refactor billing",
                              "taskId": "T-42", "waitMs": 30_000})
        card = page.locator("li.approval", has_text="planner-7")
        await card.wait_for()  # no reload: the stream told the page
        assert "delegate" in await card.locator("h3").inner_text()
        assert not parked.done()
        await shot(page, "approvals")
        await card.locator("button[data-decision=allow_once]").click()
        status, answer = parked.result(timeout=10)
    assert status == 200 and answer["resolution"] == "allow_once"
    await page.wait_for_selector("#approvals-empty:not([hidden])")
    assert page.errors == []
    # The leader's key sees approvals only: no budgets, runs or audit are offered.
    tabs = page.locator("#tabs button")
    assert await tabs.evaluate_all("tabs => tabs.map(t => t.dataset.view)") == ["approvals"]
    assert await tabs.all_inner_texts() == ["Approvals"]  # and no count: nothing waits
    assert await page.locator("#view-budgets").is_hidden()
    assert await page.evaluate("() => Object.keys(localStorage).length") == 0
    assert await page.evaluate("() => sessionStorage.length") == 1
    assert fleet.keys["leader"] not in page.url


async def test_a_paused_budget_is_resumed_from_the_console_and_the_next_spend_goes_through(
    fleet: Fleet, browser: Any
) -> None:
    assert fleet.call("operator", "POST", "/api/governance/budgets",
                      {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100,
                       "mode": "cap"})[0] == 200
    page = await signed_in(browser, fleet, "operator")
    await page.click("#tab-budgets")
    budget = page.locator("li.budget[data-scope-id=a1]")
    await budget.wait_for()
    status, spent = fleet.call("executor", "POST", "/api/governance/spend",
                               {"agentId": "a1", "costUsdCents": 85})
    assert status == 200 and spent["stop"] is False
    await budget.locator(".badge.soft_capped").wait_for()  # live: the crossing's event
    status, spent = fleet.call("executor", "POST", "/api/governance/spend",
                               {"agentId": "a1", "costUsdCents": 20})
    assert spent["stop"] is True
    await budget.locator(".badge.paused").wait_for()
    assert fleet.call("executor", "GET", "/api/governance/preflight?agentId=a1")[1][
        "allowed"] is False
    await budget.locator("form.resume input").fill("50")
    await budget.locator("form.resume button").click()
    await budget.locator(".badge.active, .badge.soft_capped").wait_for()
    status, spent = fleet.call("executor", "POST", "/api/governance/spend",
                               {"agentId": "a1", "costUsdCents": 10})
    assert status == 200 and spent["stop"] is False
    # An operator sees approvals read-only: nothing to click.
    await page.click("#tab-approvals")
    fleet.call("executor", "POST", "/api/tools/approvals",
               {"toolName": "shell", "agentId": "a1", "waitMs": 0})
    card = page.locator("li.approval", has_text="shell")
    await card.wait_for()
    assert await card.locator("button").count() == 0
    assert page.errors == []


async def test_a_hostile_tool_name_is_shown_as_text(fleet: Fleet, browser: Any) -> None:
    page = await signed_in(browser, fleet, "admin")
    fleet.call("executor", "POST", "/api/tools/approvals",
               {"toolName": XSS, "agentId": "a1", "args": {"apiKey": "s3cret", "path": XSS},
                "waitMs": 0})
    card = page.locator("li.approval", has_text="a1")
    await card.wait_for()
    assert await card.locator(".tool-name").inner_text() == XSS
    assert await page.locator("img").count() == 0  # parsed as markup it would be an <img>
    assert "s3cret" not in await card.inner_text()  # masked before it was stored
    await page.click("#tab-audit")
    await page.locator("#audit-table td.details", has_text=XSS).first.wait_for()
    assert await page.locator("img").count() == 0
    assert page.errors == []  # no alert() dialog, no script error


async def test_every_view_renders_on_a_phone_and_the_chain_verifies(
    fleet: Fleet, browser: Any
) -> None:
    fleet.call("operator", "POST", "/api/governance/budgets",
               {"scope": "team", "scopeId": "research", "limitUsdCents": 5000, "mode": "cap"})
    fleet.call("operator", "POST", "/api/governance/budgets",
               {"scope": "agent", "scopeId": "writer-3", "limitUsdCents": 800, "mode": "warn"})
    fleet.call("operator", "POST", "/api/governance/budgets",
               {"scope": "agent", "scopeId": "scraper-1", "limitUsdCents": 300, "mode": "cap"})
    fleet.call("executor", "POST", "/api/governance/spend",
               {"agentId": "writer-3", "teamId": "research", "costUsdCents": 690})
    fleet.call("executor", "POST", "/api/governance/spend",
               {"agentId": "scraper-1", "teamId": "research", "costUsdCents": 320})
    status, run = fleet.call("executor", "POST", "/api/governance/runs", {"agentId": "writer-3"})
    assert status == 201
    fleet.call("executor", "POST", f"/api/governance/runs/{run['run']['id']}/events",
               [{"kind": "policy-denied", "signature": "rm -rf"}] * 3)
    fleet.call("executor", "POST", "/api/governance/runs", {"agentId": "planner-7"})
    fleet.call("executor", "POST", "/api/tools/approvals",
               {"toolName": "payments.refund", "agentId": "support-2",
                "args": {"orderId": "A-1009", "amountUsd": 120, "token": "tok_live_x"},
                "reason": "customer charged twice", "waitMs": 0})
    page = await signed_in(browser, fleet, "admin", phone=True)
    await page.locator("li.approval").first.wait_for()
    await shot(page, "phone")
    await page.click("#tab-runs")
    await page.locator("#runs-table tr[data-run] .badge.tripped").wait_for()
    assert "repeat" in await page.locator("#runs-table tbody").inner_text()
    await page.set_viewport_size({"width": 1280, "height": 860})
    await shot(page, "runs")
    await page.click("#tab-budgets")
    await page.locator("li.budget .badge.paused").wait_for()
    assert await page.locator("li.budget").count() == 3
    await shot(page, "budgets")
    await page.click("#tab-audit")
    await page.locator("#chain.ok").wait_for()
    await shot(page, "audit")
    await page.select_option("#audit-filters select[name=eventType]", "budget")
    await page.click("#audit-filters button[type=submit]")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#audit-table tbody tr td:nth-child(3)')]"
        ".every(td => td.textContent === 'budget')")
    assert page.errors == []


async def test_the_console_is_served_with_a_strict_policy_and_without_a_key(fleet: Fleet) -> None:
    parts = urllib.parse.urlsplit(fleet.url)
    for path, kind in (("/console/", "text/html"), ("/console/app.js", "text/javascript"),
                       ("/console/app.css", "text/css")):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 200 and resp.getheader("Content-Type", "").startswith(kind)
        policy = resp.getheader("Content-Security-Policy", "")
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        if kind == "text/html":
            scripts = re.findall(rb"<script[^>]*>", body)
            assert scripts and all(b' src="' in tag for tag in scripts)  # no inline script
            assert not re.search(rb"\son[a-z]+\s*=", body)  # no inline handler
    # Every /api/ route still needs a key.
    status, _ = request(fleet.url, "GET", "/api/tools/approvals", "")
    assert status == 401


async def test_a_leader_can_sign_in_and_decide_with_the_keyboard_alone(
    fleet: Fleet, browser: Any
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(fleet.url + "/console/")
    assert await page.evaluate("() => document.activeElement.id") == "key"
    await page.keyboard.type(fleet.keys["leader"])
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#live.on")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        parked = pool.submit(fleet.call, "executor", "POST", "/api/tools/approvals",
                             {"toolName": "db.migrate", "agentId": "ops-1", "waitMs": 30_000})
        await page.locator("li.approval", has_text="db.migrate").wait_for()
        for _ in range(30):
            await page.keyboard.press("Tab")
            focused = await page.evaluate("() => document.activeElement.dataset.decision")
            if focused == "deny":
                break
        assert focused == "deny"
        label = await page.evaluate("() => document.activeElement.getAttribute('aria-label')")
        assert label == "Deny: ops-1 may not run db.migrate"  # says what it decides
        await page.keyboard.press("Enter")
        status, answer = parked.result(timeout=10)
    assert status == 200 and answer["resolution"] == "deny"


async def test_an_edited_audit_row_shows_the_chain_broken(
    fleet: Fleet, browser: Any, tmp_path: Path
) -> None:
    fleet.call("operator", "POST", "/api/governance/budgets",
               {"scope": "agent", "scopeId": "a1", "limitUsdCents": 100})
    page = await signed_in(browser, fleet, "operator")
    await page.click("#tab-audit")
    await page.locator("#chain.ok").wait_for()
    # Someone with the database file rewrites history behind the daemon's back.
    db = sqlite3.connect(tmp_path / "clawguard.db")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET details = replace(details, '100', '999')"
               " WHERE action = 'budget.set'")
    db.commit()
    db.close()
    await page.click("#audit-filters button[type=submit]")
    await page.locator("#chain.bad").wait_for()
    assert "does not match its hash" in await page.locator("#chain").inner_text()
