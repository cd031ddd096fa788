"""ETags follow table versions; a new version (an ingest) invalidates cached results."""

from __future__ import annotations

import json

import pyarrow as pa

import engine
from tests.api.conftest import serve

COUNT = {"q": "SELECT count(*) AS n FROM events"}


def test_etag_304_and_invalidation_after_ingest(mutable_dir) -> None:
    with serve(mutable_dir) as server, server.client() as http:
        first = http.get("/api/sql", params=COUNT)
        etag = first.headers["etag"]
        assert first.json()["rows"] == [{"n": 100}]
        assert http.get("/api/sql", params=COUNT, headers={"If-None-Match": etag}).status_code == 304
        again = http.get("/api/sql", params=COUNT)
        assert again.headers["x-colonnade-cache"] == "hit" and again.headers["etag"] == etag

        rows_etag = http.get("/api/tables/events/rows", params={"limit": "3"}).headers["etag"]
        table_etag = http.get("/api/tables/events").headers["etag"]

        # Another process (here: the engine API) writes a new version.
        db = engine.Database(mutable_dir)
        db.ingest(pa.table({"id": pa.array([1000], pa.int64()), "label": ["new"]}), "events")

        after = http.get("/api/sql", params=COUNT, headers={"If-None-Match": etag})
        assert after.status_code == 200 and after.headers["etag"] != etag
        assert after.headers["x-colonnade-cache"] == "miss"
        assert after.json()["rows"] == [{"n": 101}]
        assert http.get("/api/tables/events/rows", params={"limit": "3"}).headers["etag"] != rows_etag
        assert http.get("/api/tables/events").headers["etag"] != table_etag
        assert http.get("/api/tables/events").json()["version"] == 1


def test_post_is_not_etagged_but_cached(mutable_dir) -> None:
    with serve(mutable_dir) as server, server.client() as http:
        sql = "SELECT sum(id) AS s FROM events"
        first = http.post("/api/sql", content=sql)
        assert "etag" not in first.headers
        second = http.post("/api/sql", content=sql)
        assert second.headers["x-colonnade-cache"] == "hit"
        assert json.loads(second.content)["rows"] == [{"s": sum(range(100))}]


def test_different_params_are_different_entries(mutable_dir) -> None:
    with serve(mutable_dir) as server, server.client() as http:
        q = "SELECT label FROM events WHERE id = ?"
        one = http.get("/api/sql", params={"q": q, "params": "[1]"}).json()["rows"]
        two = http.get("/api/sql", params={"q": q, "params": "[2]"}).json()["rows"]
        assert one == [{"label": "row 1"}] and two == [{"label": "row 2"}]
