"""The console at ``/``: tables, queries, errors, downloads, charts, big results, share links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.console.conftest import MAX_RESULT_ROWS, grid_rows, run_sql, wait_done

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
STATUS_QUERY = "SELECT o_orderstatus, count(*) AS n, sum(o_totalprice) AS total\nFROM orders GROUP BY 1 ORDER BY 1"


def api_json(api: httpx.Client, sql: str, **params) -> dict:
    response = api.get("/api/sql", params={"q": sql, **params})
    assert response.status_code == 200, response.text
    return response.json()


# -- serving --------------------------------------------------------------------------------


def test_page_and_assets_carry_a_strict_csp(api: httpx.Client) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # No inline script or style anywhere: every <script> has a src, no <style> or style="".
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert "<style" not in page.text and "style=" not in page.text
    for asset, media in [("/static/js/main.js", "text/javascript"), ("/static/console.css", "text/css")]:
        response = api.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(media)
        assert response.headers["content-security-policy"] == csp
        assert response.headers["x-frame-options"] == "DENY"
    assert api.get("/static/../console.py").status_code == 404


def test_every_request_stays_on_the_server(open_console, console_server) -> None:
    page = open_console("/", wait_tables=False)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.reload()
    page.wait_for_selector("#table-list .table-item")
    assert requested and all(url.startswith(console_server.url) for url in requested), requested
    modules = {p.name for p in (STATIC / "js").glob("*.js")}
    assert modules <= {url.rsplit("/", 1)[-1] for url in requested}  # every module is actually used


# -- table browser --------------------------------------------------------------------------


def test_table_browser_lists_every_table(open_console, api: httpx.Client) -> None:
    page = open_console()
    tables = {t["name"]: t for t in api.get("/api/tables").json()}
    items = page.locator("#table-list .table-item")
    assert items.count() == len(tables) == 8
    shown = {}
    for i in range(items.count()):
        item = items.nth(i)
        shown[item.get_attribute("data-table")] = item
    assert set(shown) == set(tables)
    orders = shown["orders"]
    assert orders.locator(".badge").inner_text().lower() == "managed"
    assert orders.locator(".version").inner_text() == f"v{tables['orders']['version']}"
    assert orders.locator(".rows").get_attribute("title") == f"{tables['orders']['row_count']:,} rows"
    orders.locator(".twisty").click()
    columns = page.locator('[data-table="orders"] .column-list li')
    got = [
        (columns.nth(i).locator(".col-name").inner_text(), columns.nth(i).locator(".col-type").inner_text())
        for i in range(columns.count())
    ]
    assert got == [(c["name"], c["type"] + ("" if c["nullable"] else " not null")) for c in tables["orders"]["columns"]]
    # The filter finds tables by column name too.
    page.fill("#table-filter", "n_regionkey")
    assert page.locator("#table-list .table-item").evaluate_all("els => els.map(e => e.dataset.table)") == ["nation"]


def test_clicking_a_table_shows_first_rows_and_history(open_console, api: httpx.Client) -> None:
    page = open_console()
    page.click('[data-table="nation"] .table-name')
    page.wait_for_selector("#detail-grid .grid-row:not([hidden])")
    assert page.inner_text("#detail-name") == "nation"
    assert "25 rows" in page.inner_text("#detail-meta")
    first = api.get("/api/tables/nation/rows", params={"limit": 100}).json()["rows"][0]
    row = grid_rows(page, "#detail-grid")[0]
    assert row[:3] == ["1", str(first["n_nationkey"]), first["n_name"]]
    history = api.get("/api/tables/nation/history").json()
    cells = page.locator("#detail-history tr").first.locator("td").all_inner_texts()
    assert cells[0] == str(history[0]["version"]) and cells[2].startswith(history[0]["operation"])
    # "Query this table" runs a SELECT over it.
    page.click("#detail-query")
    assert wait_done(page).startswith("25 rows · ")
    assert "FROM nation" in page.input_value("#sql")


# -- queries --------------------------------------------------------------------------------


def test_ctrl_enter_runs_the_query_and_shows_rows(open_console, api: httpx.Client) -> None:
    page = open_console()
    status = run_sql(page, STATUS_QUERY)
    expected = api_json(api, STATUS_QUERY)
    assert status.startswith(f"{expected['row_count']} rows · ")
    headers = page.locator("#results-grid .grid-colname").all_inner_texts()
    assert headers == [c["name"] for c in expected["columns"]]
    types = page.locator("#results-grid .grid-coltype").all_inner_texts()
    assert types == [c["type"] for c in expected["columns"]]
    # Every value as the API sent it: decimals keep their exact digits.
    want = [[str(i + 1), r["o_orderstatus"], str(r["n"]), f"{r['total']:.2f}"] for i, r in enumerate(expected["rows"])]
    assert grid_rows(page) == want
    assert page.locator("mark.sql-error").count() == 0 and page.is_hidden("#error")
    # Highlighting: keywords, functions and numbers are told apart.
    assert page.locator("#editor-highlight .tok-keyword").all_inner_texts()[:2] == ["SELECT", "AS"]
    assert "count" in page.locator("#editor-highlight .tok-function").all_inner_texts()


def test_polars_engine_is_used_and_kept_in_links(open_console, api: httpx.Client) -> None:
    page = open_console()
    status = run_sql(page, "SELECT n_regionkey, count(*) AS nations FROM nation GROUP BY 1 ORDER BY 1", engine="polars")
    assert status.startswith("5 rows")
    assert grid_rows(page)[0][1:] == ["0", "5"]
    assert "engine=polars" in page.get_attribute("#dl-csv", "href")
    assert "engine=polars" in page.url


def test_syntax_error_shows_detail_and_marks_the_position(open_console, api: httpx.Client) -> None:
    page = open_console()
    sql = "SELECT o_orderkey,\n       o_totalprice\nFROM orders WHERE o_totalprice > 10 GROUP"
    problem = api.get("/api/sql", params={"q": sql}).json()
    assert problem["code"] == "sql_syntax" and problem["position"]["line"] == 3
    assert run_sql(page, sql) == "Failed · 400"
    assert page.is_visible("#error")
    assert page.inner_text("#error-detail") == problem["detail"]
    assert page.inner_text("#error-code") == "sql_syntax"
    mark = page.locator("#editor-highlight mark.sql-error")
    assert mark.count() == 1 and mark.inner_text() == "GROUP"
    # The caret (selection) sits on the marked token, which contains the reported position.
    start, end = page.eval_on_selector("#sql", "t => [t.selectionStart, t.selectionEnd]")
    assert sql[start:end] == "GROUP" and start < problem["position"]["offset"] <= end
    # Typing clears the mark; a refused statement shows its detail with no position.
    page.locator("#sql").press("End")
    page.keyboard.type(" BY 1")
    assert mark.count() == 0
    assert run_sql(page, "DROP TABLE orders") == "Failed · 403"
    assert page.inner_text("#error-code") == "statement_not_allowed"
    assert page.locator("mark.sql-error").count() == 0


def test_error_inside_a_selection_is_marked_where_it_is(open_console) -> None:
    page = open_console()
    text = "SELECT 1;\n\nSELECT * FRM orders"
    page.fill("#sql", text)
    start = text.index("SELECT *")
    page.eval_on_selector("#sql", f"t => t.setSelectionRange({start}, {len(text)})")
    page.locator("#sql").press("Control+Enter")
    assert wait_done(page) == "Failed · 400"
    start_sel, end_sel = page.eval_on_selector("#sql", "t => [t.selectionStart, t.selectionEnd]")
    assert text[start_sel:end_sel] == "orders"


def test_csv_download_is_byte_identical_to_the_api(open_console, api: httpx.Client, tmp_path: Path) -> None:
    page = open_console()
    sql = "SELECT c_custkey, c_name, c_acctbal, c_comment FROM customer ORDER BY c_custkey LIMIT 500"
    run_sql(page, sql)
    with page.expect_download() as info:
        page.click("#dl-csv")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    expected = api.get("/api/sql", params={"q": sql, "format": "csv"})
    # The server names the file (one name per query), as it does for curl -OJ.
    assert expected.headers["content-disposition"] == f'attachment; filename="{download.suggested_filename}"'
    assert re.fullmatch(r"query-[0-9a-f]{8}\.csv", download.suggested_filename)
    assert expected.headers["content-type"].startswith("text/csv")
    assert saved.read_bytes() == expected.content
    assert expected.content.count(b"\n") == 501
    # The other formats point at the same query.
    for fmt, magic in [("parquet", b"PAR1"), ("arrow", b"\xff\xff\xff\xff"), ("json", b'{"columns"')]:
        href = page.get_attribute(f"#dl-{fmt}", "href")
        assert href == f"/api/sql?q={quote(sql, safe='').replace('%20', '+')}&engine=duckdb&format={fmt}"
        assert api.get(href).content.startswith(magic), fmt


def test_chart_draws_one_mark_per_row(open_console) -> None:
    page = open_console()
    sql = (
        "SELECT r_name, count(*) AS suppliers FROM supplier JOIN nation ON s_nationkey = n_nationkey "
        "JOIN region ON n_regionkey = r_regionkey GROUP BY 1 ORDER BY 1"
    )
    assert run_sql(page, sql).startswith("5 rows")
    page.click("#tab-chart")
    assert page.input_value("#chart-kind") == "bar"
    assert page.locator("#chart-x option:checked").inner_text() == "r_name"
    assert page.locator("#chart-y option:checked").inner_text() == "suppliers"
    for kind in ("bar", "line", "scatter"):
        page.select_option("#chart-kind", kind)
        assert page.get_attribute("#chart", "data-marks") == "5", kind
        assert mark_pixels(page) > 100, kind
    # A numeric x axis over many rows: one point per row, nulls in y skipped.
    run_sql(
        page,
        "SELECT o_totalprice AS x, CASE WHEN o_orderkey % 10 = 0 THEN NULL ELSE o_custkey END AS y "
        "FROM orders LIMIT 2000",
    )
    page.click("#tab-chart")
    page.select_option("#chart-kind", "scatter")
    assert page.get_attribute("#chart", "data-marks") == "1800"
    assert "200 rows without a numeric y skipped" in page.inner_text("#chart-note")


def mark_pixels(page) -> int:
    """Pixels painted in the mark colour (#2f6fb0, give or take anti-aliasing)."""
    return page.eval_on_selector(
        "#chart",
        """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - 47) < 30 && Math.abs(d[i + 1] - 111) < 30 && Math.abs(d[i + 2] - 176) < 30 && d[i + 3] > 100) n++;
        return n;
    }""",
    )


def test_100k_rows_stream_into_a_virtual_grid(open_console) -> None:
    page = open_console()
    sql = "SELECT range AS i, range * 2 AS twice, 'row ' || range AS label FROM range(100000) ORDER BY i"
    status = run_sql(page, sql)
    assert status.startswith("100,000 rows · "), status
    assert page.is_hidden("#truncated")
    # Only what is on screen (plus a margin) exists in the DOM.
    row_elements = page.locator("#results-grid .grid-row").count()
    assert 10 <= row_elements <= 80, row_elements
    page.eval_on_selector("#results-grid .grid-scroll", "s => s.scrollTop = s.scrollHeight")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results-grid .grid-row:not([hidden])')]"
        ".some(r => r.firstChild.textContent === '100000')"
    )
    last = next(r for r in grid_rows(page) if r[0] == "100000")
    assert last == ["100000", "99999", "199998", "row 99999"]
    assert page.locator("#results-grid .grid-row").count() == row_elements
    # Sorting by a header click reorders the 100k rows in place.
    page.locator("#results-grid .grid-head").nth(0).click()
    page.locator("#results-grid .grid-head").nth(0).click()  # descending
    page.eval_on_selector("#results-grid .grid-scroll", "s => s.scrollTop = 0")
    page.wait_for_function(
        "() => document.querySelector('#results-grid .grid-row .grid-cell:nth-child(2)').textContent === '99999'"
    )


def test_result_past_the_row_limit_says_it_is_truncated(open_console) -> None:
    page = open_console()
    status = run_sql(page, f"SELECT range AS i FROM range({MAX_RESULT_ROWS + 5})")
    assert status.startswith(f"{MAX_RESULT_ROWS:,} rows")
    assert page.is_visible("#truncated")
    assert f"first {MAX_RESULT_ROWS:,} rows" in page.inner_text("#truncated")


def test_share_link_opens_and_runs_the_query(open_console) -> None:
    page = open_console()
    run_sql(page, "SELECT 6 * 7 AS answer")
    assert "q=SELECT" in page.url  # the address bar is the share link
    shared = open_console("/?q=" + quote("SELECT n_name FROM nation WHERE n_nationkey = 7"))
    assert wait_done(shared).startswith("1 row ·")
    assert shared.input_value("#sql") == "SELECT n_name FROM nation WHERE n_nationkey = 7"
    assert grid_rows(shared) == [["1", "GERMANY"]]


def test_history_is_kept_in_the_browser(open_console) -> None:
    page = open_console()
    run_sql(page, "SELECT 1 AS first_query")
    run_sql(page, "SELECT * FRM nowhere")
    page.reload()
    page.click("#tab-history")
    items = page.locator("#history-list .history-item")
    assert items.count() == 2
    assert items.nth(0).locator(".history-sql").inner_text() == "SELECT * FRM nowhere"
    assert "failed" in items.nth(0).get_attribute("class")
    assert items.nth(1).locator(".history-meta").inner_text().startswith("duckdb · 1 row ·")
    items.nth(1).dblclick()
    assert wait_done(page).startswith("1 row ·")
    assert page.input_value("#sql") == "SELECT 1 AS first_query"
