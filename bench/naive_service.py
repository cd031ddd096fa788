"""The GIL-bound starting point: a Litestar service that loads Parquet into pandas at start-up
and answers each query by computing in Python (pandas) inside the request handler.

It serves the same four TPC-H queries the benchmark's mix uses (Q1, Q3, Q6, Q12) as
``GET /q/{n}`` with JSON rows. Run: ``NAIVE_DATA=bench/data/sf1 uvicorn bench.naive_service:app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

COLUMNS = {
    "lineitem": [
        "l_orderkey",
        "l_quantity",
        "l_extendedprice",
        "l_discount",
        "l_tax",
        "l_returnflag",
        "l_linestatus",
        "l_shipdate",
        "l_commitdate",
        "l_receiptdate",
        "l_shipmode",
    ],
    "orders": ["o_orderkey", "o_custkey", "o_orderdate", "o_orderpriority", "o_shippriority"],
    "customer": ["c_custkey", "c_mktsegment"],
}


def load(data_dir: str, table: str) -> pd.DataFrame:
    """The table's live Parquet files (from the Delta log) as a pandas frame with float money."""
    from engine.catalog import Catalog

    files = Catalog(data_dir).get(table).files
    t = pa.concat_tables(pq.read_table(f, columns=COLUMNS[table]) for f in files)
    cols = []
    for field, col in zip(t.schema, t.columns, strict=True):
        if pa.types.is_decimal(field.type):
            col = col.cast(pa.float64())
        elif pa.types.is_string_view(field.type):
            col = col.cast(pa.string())
        elif pa.types.is_date32(field.type):
            col = col.cast(pa.timestamp("ms"))
        cols.append(col)
    return pa.table(cols, names=t.column_names).to_pandas()


def q1(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    li = d["lineitem"]
    li = li[li.l_shipdate <= pd.Timestamp("1998-09-02")]
    li = li.assign(disc_price=li.l_extendedprice * (1 - li.l_discount))
    li = li.assign(charge=li.disc_price * (1 + li.l_tax))
    g = li.groupby(["l_returnflag", "l_linestatus"])
    out = g.agg(
        sum_qty=("l_quantity", "sum"),
        sum_base_price=("l_extendedprice", "sum"),
        sum_disc_price=("disc_price", "sum"),
        sum_charge=("charge", "sum"),
        avg_qty=("l_quantity", "mean"),
        avg_price=("l_extendedprice", "mean"),
        avg_disc=("l_discount", "mean"),
        count_order=("l_quantity", "size"),
    )
    return out.reset_index().sort_values(["l_returnflag", "l_linestatus"])


def q3(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    c = d["customer"]
    o = d["orders"]
    li = d["lineitem"]
    date = pd.Timestamp("1995-03-15")
    c = c[c.c_mktsegment == "BUILDING"]
    o = o[o.o_orderdate < date]
    li = li[li.l_shipdate > date]
    j = c.merge(o, left_on="c_custkey", right_on="o_custkey").merge(li, left_on="o_orderkey", right_on="l_orderkey")
    j = j.assign(revenue=j.l_extendedprice * (1 - j.l_discount))
    out = j.groupby(["l_orderkey", "o_orderdate", "o_shippriority"], as_index=False).revenue.sum()
    return out.sort_values(["revenue", "o_orderdate"], ascending=[False, True]).head(10)


def q6(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    li = d["lineitem"]
    m = (
        (li.l_shipdate >= pd.Timestamp("1994-01-01"))
        & (li.l_shipdate < pd.Timestamp("1995-01-01"))
        & (li.l_discount >= 0.05)
        & (li.l_discount <= 0.07)
        & (li.l_quantity < 24)
    )
    sel = li[m]
    return pd.DataFrame({"revenue": [(sel.l_extendedprice * sel.l_discount).sum()]})


def q12(d: dict[str, pd.DataFrame]) -> pd.DataFrame:
    li = d["lineitem"]
    li = li[
        li.l_shipmode.isin(["MAIL", "SHIP"])
        & (li.l_commitdate < li.l_receiptdate)
        & (li.l_shipdate < li.l_commitdate)
        & (li.l_receiptdate >= pd.Timestamp("1994-01-01"))
        & (li.l_receiptdate < pd.Timestamp("1995-01-01"))
    ]
    j = li.merge(d["orders"], left_on="l_orderkey", right_on="o_orderkey")
    high = j.o_orderpriority.isin(["1-URGENT", "2-HIGH"])
    j = j.assign(high_line_count=high.astype(int), low_line_count=(~high).astype(int))
    return (
        j.groupby("l_shipmode", as_index=False)[["high_line_count", "low_line_count"]].sum().sort_values("l_shipmode")
    )


QUERIES = {1: q1, 3: q3, 6: q6, 12: q12}


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    data_dir = os.environ.get("NAIVE_DATA", "bench/data/sf1")
    app.state.frames = {t: load(data_dir, t) for t in COLUMNS}
    yield


@get("/q/{n:int}", sync_to_thread=True)
def query(n: int, state: State) -> dict[str, Any]:
    if n not in QUERIES:
        raise NotFoundException(f"no query {n}")
    out = QUERIES[n](state.frames)
    return {"columns": list(out.columns), "rows": out.astype(object).where(out.notna(), None).values.tolist()}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready")
async def ready(state: State) -> dict[str, int]:
    return {"tables": len(state.frames)}


app = Litestar([query, health, ready], lifespan=[lifespan])
