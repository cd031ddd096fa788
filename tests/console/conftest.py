"""The web console in a real browser: Debian's chromium driven by Playwright, against a real server.

``playwright install`` cannot download browsers here, so the system chromium is used
(``make test`` installs it when missing); without it these tests are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve

CHROMIUM = os.environ.get("COLONNADE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 860}
MAX_RESULT_ROWS = 100_000

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")


@pytest.fixture(scope="session")
def console_server(tpch_dir: Path) -> Iterator[Server]:
    with serve(tpch_dir, env={"COLONNADE_LIMITS_MAX_RESULT_ROWS": str(MAX_RESULT_ROWS)}) as srv:
        yield srv


@pytest.fixture(scope="session")
def api(console_server: Server) -> Iterator[httpx.Client]:
    with console_server.client() as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[sync_api.Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (make chromium installs it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageErrors(list):
    """Uncaught page errors and CSP violations: every test ends asserting there were none."""

    def watch(self, page: sync_api.Page) -> None:
        page.on("pageerror", lambda exc: self.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: "Content Security Policy" in msg.text and self.append(f"csp: {msg.text}"))


@pytest.fixture
def open_console(browser: sync_api.Browser, console_server: Server) -> Iterator:
    """``open_console(path="/")`` → a fresh page (own storage) showing the console, tables loaded."""
    contexts, errors = [], PageErrors()

    def open_(path: str = "/", *, wait_tables: bool = True) -> sync_api.Page:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, base_url=console_server.url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors.watch(page)
        page.goto(path)
        if wait_tables:
            page.wait_for_selector("#table-list .table-item")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors


def run_sql(page: sync_api.Page, sql: str, *, engine: str | None = None) -> str:
    """Type `sql` into the editor, run it with Ctrl+Enter and return the final status line."""
    if engine:
        page.select_option("#engine", engine)
    editor = page.locator("#sql")
    editor.fill(sql)
    page.eval_on_selector("#status", "s => delete s.dataset.state")
    editor.press("Control+Enter")
    return wait_done(page)


def wait_done(page: sync_api.Page) -> str:
    page.wait_for_selector("#status[data-state=done]")
    return page.inner_text("#status")


def grid_rows(page: sync_api.Page, host: str = "#results-grid") -> list[list[str]]:
    """The rendered (visible, not hidden) rows of a grid: [row number, cell, cell, …] texts."""
    return page.eval_on_selector_all(
        f"{host} .grid-row:not([hidden])", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
    )
