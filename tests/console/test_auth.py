"""With auth on, the console asks for a token, keeps it for the tab and sends it on every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from tests.api.conftest import Server, serve
from tests.console.conftest import VIEWPORT, PageErrors, grid_rows, run_sql


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    from engine.catalog import Catalog
    from engine.ingest import ingest
    from engine.tokens import TokenStore

    data = tmp_path_factory.mktemp("console-auth") / "data"
    ingest(Catalog(data, create=True), pa.table({"id": [1, 2, 3], "owner": ["a", "b", "c"]}), "events")
    token = TokenStore(data / ".colonnade" / "tokens.json").create("analyst", all_tables=True)  # the default place
    with serve(data, env={"COLONNADE_AUTH_ENABLED": "true"}) as server:
        yield server, token


def test_token_field_unlocks_the_console(browser, secured, tmp_path: Path) -> None:
    server, token = secured
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, base_url=server.url)
    errors = PageErrors()
    try:
        page = context.new_page()
        errors.watch(page)
        page.goto("/")  # the page itself is open; the API behind it is not
        page.wait_for_selector("#table-list .problem-inline")
        assert "Authorization" in page.inner_text("#table-list")
        assert run_sql(page, "SELECT 1").startswith("Failed · 401")
        assert page.inner_text("#error-code") == "unauthorized"

        page.fill("#token", token)
        page.press("#token", "Enter")
        page.wait_for_selector('#table-list .table-item[data-table="events"]')
        assert page.evaluate("sessionStorage.getItem('colonnade.token')") == token
        assert run_sql(page, "SELECT owner FROM events ORDER BY id").startswith("3 rows")
        assert [r[1] for r in grid_rows(page)] == ["a", "b", "c"]

        # A link cannot carry the header: the download is fetched with it and saved as a blob.
        with page.expect_download() as info:
            page.click("#dl-csv")
        saved = tmp_path / "result.csv"
        info.value.save_as(saved)
        expected = httpx.get(
            f"{server.url}/api/sql",
            params={"q": "SELECT owner FROM events ORDER BY id", "format": "csv"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert expected.status_code == 200
        assert saved.read_bytes() == expected.content

        # The token is per tab (sessionStorage): a new tab starts without it.
        fresh = context.new_page()
        fresh.goto("/")
        fresh.wait_for_selector("#table-list .problem-inline")
        assert fresh.input_value("#token") == ""
    finally:
        context.close()
    assert not errors, errors
