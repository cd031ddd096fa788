"""``Result``: one query's answer, the same for local and remote queries.

It wraps a stream of Arrow record batches. ``reader()`` streams it without holding it;
``arrow()``/``pl()``/``df()`` read it whole, once, and keep the table for later calls.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from engine.errors import ResultConsumed

if TYPE_CHECKING:
    import pandas
    import polars

HTML_PREVIEW_ROWS = 20


class Result:
    def __init__(
        self,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        *,
        engine: str,
        sql: str = "",
        cancel: Callable[[], None] = lambda: None,
        started: float | None = None,
    ) -> None:
        self.schema = schema
        self.engine = engine
        self.sql = sql
        self._batches: Iterable[pa.RecordBatch] | None = batches
        self._source = batches  # kept to close it, even after a reader took the stream
        self._cancel = cancel
        self._table: pa.Table | None = None
        self._started = time.perf_counter() if started is None else started
        self._finished: float | None = None
        self.rows = 0  # rows read so far

    # -- streaming -------------------------------------------------------------------------

    def reader(self) -> pa.RecordBatchReader:
        """A streaming reader; batches arrive as the engine produces them."""
        if self._table is not None:
            return self._table.to_reader()
        return pa.RecordBatchReader.from_batches(self.schema, self._take_stream())

    def _take_stream(self) -> Iterator[pa.RecordBatch]:
        if self._batches is None:
            raise ResultConsumed("this result was already streamed; call arrow() before reader() to read it twice")
        batches, self._batches = self._batches, None
        try:
            for batch in batches:
                self.rows += batch.num_rows
                yield batch
        finally:
            self._finished = time.perf_counter()

    # -- whole results ---------------------------------------------------------------------

    def arrow(self) -> pa.Table:
        if self._table is None:
            self._table = pa.Table.from_batches(list(self._take_stream()), schema=self.schema)
        return self._table

    def pl(self) -> polars.DataFrame:
        import polars as pl

        return pl.from_arrow(self.arrow())  # type: ignore[return-value]

    def df(self) -> pandas.DataFrame:
        return self.arrow().to_pandas()

    def fetchall(self) -> list[tuple]:
        table = self.arrow()
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True)) if table.num_columns else []

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def elapsed_ms(self) -> float:
        end = self._finished if self._finished is not None else time.perf_counter()
        return (end - self._started) * 1000

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def cancel(self) -> None:
        """Interrupt the engine; safe from any thread, even while another thread reads."""
        if self._finished is None:
            self._cancel()

    def close(self) -> None:
        """Stop the query if it is still running and release its engine handle.
        Call it from the thread that reads the stream (or when no thread does)."""
        self.cancel()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        self._batches = None

    def __enter__(self) -> Result:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shape = (
            f"{self._table.num_rows} rows × {self.schema.__len__()} columns"
            if self._table is not None
            else "not read yet"
        )
        return f"<Result engine={self.engine} {shape}>"

    def _repr_html_(self) -> str:
        table = self.arrow()
        head = table.slice(0, HTML_PREVIEW_ROWS).to_pylist()
        cells = "".join(
            f"<th>{html.escape(n)}<br><small>{html.escape(str(t))}</small></th>"
            for n, t in zip(table.column_names, table.schema.types, strict=True)
        )
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{'<i>null</i>' if v is None else html.escape(str(v))}</td>" for v in row.values())
            + "</tr>"
            for row in head
        )
        note = f"{table.num_rows:,} rows × {table.num_columns} columns · {self.elapsed_ms:.1f} ms · {self.engine}"
        if table.num_rows > HTML_PREVIEW_ROWS:
            note = f"first {HTML_PREVIEW_ROWS} of " + note
        return f"<table><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table><p><small>{note}</small></p>"
