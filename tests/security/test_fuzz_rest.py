"""Hypothesis over PostgREST filters on /api/tables/{name}/rows (a real server): a valid
request returns exactly what the equivalent hand-written DuckDB query returns in-process; an
invalid one is a clean 4xx problem; nothing is ever a 5xx.

``COLONNADE_FUZZ_EXAMPLES`` raises the example count for a long run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

# table -> (key column, {column: kind}); kinds: int, dec, str
TABLES = {
    "nation": ("n_nationkey", {"n_nationkey": "int", "n_name": "str", "n_regionkey": "int", "n_comment": "str"}),
    "supplier": (
        "s_suppkey",
        {
            "s_suppkey": "int",
            "s_name": "str",
            "s_nationkey": "int",
            "s_phone": "str",
            "s_acctbal": "dec",
            "s_comment": "str",
        },
    ),
}
COMPARE = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
SQL_TYPE = {"int": "BIGINT", "dec": "DECIMAL(15,2)"}


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_value(kind: str, value: str) -> str:
    return sql_str(value) if kind == "str" else f"CAST({sql_str(value)} AS {SQL_TYPE[kind]})"


@dataclass
class Filter:
    column: str
    op: str
    values: list[str]
    negate: bool = False

    def param(self) -> str:
        if self.op == "in":
            body = "in.(" + ",".join(f'"{v}"' for v in self.values) + ")"
        elif self.op == "is":
            body = "is.null"
        else:
            body = f"{self.op}.{self.values[0]}"
        return ("not." if self.negate else "") + body

    def sql(self, kind: str) -> str:
        col = f'"{self.column}"'
        if self.op == "in":
            cond = f"{col} IN ({', '.join(sql_value(kind, v) for v in self.values)})"
        elif self.op == "is":
            cond = f"{col} IS NULL"
        elif self.op in ("like", "ilike"):
            cond = f"{col} {self.op.upper()} {sql_str(self.values[0].replace('*', '%'))}"
        else:
            cond = f"{col} {COMPARE[self.op]} {sql_value(kind, self.values[0])}"
        return f"NOT ({cond})" if self.negate else cond


@dataclass
class RowsRequest:
    table: str
    select: list[str] | None
    filters: list[Filter] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    def params(self) -> list[tuple[str, str]]:
        out = []
        if self.select:
            out.append(("select", ",".join(self.select)))
        out += [(f.column, f.param()) for f in self.filters]
        key = TABLES[self.table][0]
        order = [*self.order, (key, False)]  # the key last: a total order, so rows compare as lists
        out.append(("order", ",".join(f"{c}.{'desc' if d else 'asc'}" for c, d in order)))
        if self.limit is not None:
            out.append(("limit", str(self.limit)))
        if self.offset is not None:
            out.append(("offset", str(self.offset)))
        return out

    def sql(self) -> str:
        key, kinds = TABLES[self.table]
        cols = ", ".join(f'"{c}"' for c in self.select) if self.select else "*"
        text = f'SELECT {cols} FROM "{self.table}"'
        if self.filters:
            text += " WHERE " + " AND ".join(f.sql(kinds[f.column]) for f in self.filters)
        order = [*self.order, (key, False)]
        text += " ORDER BY " + ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in order)
        if self.limit is not None:
            text += f" LIMIT {self.limit}"
        if self.offset is not None:
            text += f" OFFSET {self.offset}"
        return text


# Text values: what the data holds, fragments of it, and characters that stress the
# PostgREST grammar and quoting (dots, commas, parentheses, quotes, stars, unicode).
TEXT = st.one_of(
    st.sampled_from(
        [
            "ALGERIA",
            "PERU",
            "Supplier#000000001",
            "27-918-335-1736",
            "",
            "a.b",
            "x,y",
            "(z)",
            "it's",
            "%",
            "_",
            "é",
            "日本",
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), max_size=8).map(str.strip),
)
NUMBER = {
    "int": st.integers(-5, 120).map(str),
    "dec": st.decimals(Decimal("-1500"), Decimal("10500"), places=2, allow_nan=False, allow_infinity=False).map(str),
    "str": TEXT,
}


@st.composite
def filters(draw: st.DrawFn, table: str) -> Filter:
    kinds = TABLES[table][1]
    column = draw(st.sampled_from(sorted(kinds)))
    kind = kinds[column]
    ops = [*COMPARE, "in", "is"] + (["like", "ilike"] if kind == "str" else [])
    op = draw(st.sampled_from(ops))
    if op in ("like", "ilike"):
        values = [draw(st.sampled_from(["*A*", "PER*", "*#0000000*", "*", "A", "*ia", "%", "*'*"]))]
    elif op == "in":
        values = draw(
            st.lists(NUMBER[kind].filter(lambda v: "," not in v and '"' not in v and v), min_size=1, max_size=4)
        )
    else:
        values = [draw(NUMBER[kind])]
    return Filter(column, op, values, negate=draw(st.booleans()))


@st.composite
def rows_requests(draw: st.DrawFn) -> RowsRequest:
    table = draw(st.sampled_from(sorted(TABLES)))
    columns = sorted(TABLES[table][1])
    select = draw(st.none() | st.lists(st.sampled_from(columns), min_size=1, max_size=3, unique=True))
    return RowsRequest(
        table,
        select,
        draw(st.lists(filters(table), max_size=3)),
        draw(st.lists(st.tuples(st.sampled_from(columns), st.booleans()), max_size=2, unique_by=lambda t: t[0])),
        draw(st.none() | st.integers(0, 30)),
        draw(st.none() | st.integers(0, 30)),
    )


def server_rows(http: httpx.Client, request: RowsRequest) -> httpx.Response:
    return http.get(f"/api/tables/{request.table}/rows", params=[*request.params(), ("format", "arrow")])


def as_rows(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


@given(request=rows_requests())
@FUZZ
def test_rows_match_duckdb(hostile_http: httpx.Client, db: engine.Database, request: RowsRequest) -> None:
    response = server_rows(hostile_http, request)
    expected = db.sql(request.sql(), engine="duckdb").arrow()
    assert response.status_code == 200, (request.params(), response.text[:500])
    got = pa.ipc.open_stream(response.content).read_all()
    assert got.column_names == expected.column_names
    assert as_rows(got) == as_rows(expected), (request.params(), request.sql())


# Garbage: any key, any operator, any value. Never a 5xx; a refusal is problem+json.
GARBAGE_KEY = st.sampled_from(
    ["select", "order", "limit", "offset", "or", "and", "n_name", "n_nationkey", "nope", "format", "engine"]
) | st.text(max_size=6)
GARBAGE_VALUE = st.one_of(
    st.text(max_size=24),
    st.builds(
        "".join,
        st.lists(
            st.sampled_from(
                [
                    "eq.",
                    "not.",
                    "in.(",
                    ")",
                    "(",
                    ",",
                    '"',
                    "*",
                    "is.",
                    "null",
                    "n_name",
                    ".",
                    "asc",
                    "desc",
                    "or(",
                    "and(",
                    "1",
                    "x",
                    "\\",
                ]
            ),
            max_size=10,
        ),
    ),
)


@given(
    table=st.sampled_from(["nation", "supplier", "region"]),
    query=st.lists(st.tuples(GARBAGE_KEY, GARBAGE_VALUE), max_size=4),
)
@FUZZ
def test_rows_garbage_is_a_clean_4xx(hostile_http: httpx.Client, table: str, query: list[tuple[str, str]]) -> None:
    response = hostile_http.get(f"/api/tables/{table}/rows", params=query)
    assert response.status_code < 500, (query, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == response.status_code


@pytest.mark.parametrize(
    "query",
    [
        [("n_name", "eq.PERU")],
        [("n_nationkey", "in.(1,2,3)"), ("order", "n_name.desc")],
        [("or", "(n_regionkey.eq.1,n_name.like.*AN*)")],
    ],
)
def test_rows_known_answers(hostile_http: httpx.Client, db: engine.Database, query: list[tuple[str, str]]) -> None:
    """The reference itself is right on a few hand-checked requests (the fuzz relies on it)."""
    got = hostile_http.get("/api/tables/nation/rows", params=[*query, ("format", "arrow")])
    assert got.status_code == 200
    counts = {"n_name": 1, "n_nationkey": 3, "or": None}
    n = pa.ipc.open_stream(got.content).read_all().num_rows
    if counts[query[0][0]] is not None:
        assert n == counts[query[0][0]]
    else:
        assert n == db.sql("SELECT count(*) FROM nation WHERE n_regionkey = 1 OR n_name LIKE '%AN%'").fetchall()[0][0]
