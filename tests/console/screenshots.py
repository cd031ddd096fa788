"""Screenshots of the console for the README.

    python -m tests.console.screenshots            # writes docs/console-{tables,query,chart}.png

Starts a server over fresh TPC-H demo data (scale 0.01) in a temporary directory and drives the
system chromium. ``test_screenshots.py`` runs the same code so this script cannot rot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAMES = ("console-tables.png", "console-query.png", "console-chart.png")

QUERY = """SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice * (1 - l_discount)) AS revenue,
       avg(l_discount) AS avg_disc,
       count(*) AS orders
FROM lineitem
WHERE l_shipdate <= DATE '1998-09-02'
GROUP BY ALL
ORDER BY ALL"""

CHART = """SELECT date_trunc('month', o_orderdate) AS month,
       sum(o_totalprice) AS revenue
FROM orders
GROUP BY 1 ORDER BY 1"""


def capture(browser: Browser, url: str, out_dir: Path) -> list[Path]:
    context = browser.new_context(viewport=VIEWPORT, base_url=url, device_scale_factor=1)
    try:
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("#table-list .table-item")
        paths = [out_dir / name for name in NAMES]
        _tables(page, paths[0])
        _query(page, paths[1])
        _chart(page, paths[2])
        return paths
    finally:
        context.close()


def _run(page: Page, sql: str) -> None:
    page.fill("#sql", sql)
    page.eval_on_selector("#status", "s => delete s.dataset.state")
    page.press("#sql", "Control+Enter")
    page.wait_for_selector("#status[data-state=done]")


def _tables(page: Page, path: Path) -> None:
    page.click('[data-table="lineitem"] .twisty')
    page.click('[data-table="orders"] .table-name')
    page.wait_for_selector("#detail-grid .grid-row:not([hidden])")
    page.screenshot(path=path)


def _query(page: Page, path: Path) -> None:
    _run(page, QUERY)
    page.screenshot(path=path)


def _chart(page: Page, path: Path) -> None:
    _run(page, CHART)
    page.click("#tab-chart")
    page.wait_for_selector("#chart[data-marks]:not([data-marks='0'])")
    page.screenshot(path=path)


def main() -> None:
    from engine.demo import create_demo
    from tests.api.conftest import serve

    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        create_demo(data, 0.01)
        with serve(data) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for path in capture(browser, server.url, DOCS):
                print(path)
            browser.close()


if __name__ == "__main__":
    main()
