"""Result caps in the encoders, checked against their rules on generated results (hypothesis).

For every format and any row and byte cap: the output never passes the byte cap; what is sent
is exactly the leading rows; and a cut is never silent (JSON ``truncated``, a final marker line
for NDJSON and CSV, ResultTooLarge for Arrow and Parquet).
"""

from __future__ import annotations

import io
import json
import os

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import MAX_ROW_BYTES
from engine.errors import ResultTooLarge
from engine.formats import STEP_BYTES, TRUNCATED, encode, steps

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "60"))


@st.composite
def results(draw: st.DrawFn) -> list[pa.RecordBatch]:
    """A result as an engine hands it out: batches of any size, text of any width."""
    width = draw(st.sampled_from([1, 10, 300, 5000]))
    batches, start = [], 0
    for _ in range(draw(st.integers(0, 5))):
        rows = draw(st.integers(0, 400))
        texts = draw(st.lists(st.text(max_size=width), min_size=rows, max_size=rows))
        ids = list(range(start, start + rows))
        batches.append(pa.record_batch({"id": pa.array(ids, pa.int64()), "s": pa.array(texts, pa.string())}))
        start += rows
    return batches


SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("s", pa.string())])
caps = st.one_of(st.none(), st.integers(0, 2000))
byte_caps = st.one_of(st.none(), st.integers(300, 400_000))


def body(fmt: str, batches: list[pa.RecordBatch], max_rows: int | None, max_bytes: int | None) -> bytes:
    return b"".join(encode(fmt, SCHEMA, iter(batches), max_rows=max_rows, max_bytes=max_bytes))


def all_ids(batches: list[pa.RecordBatch]) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(batches=results(), max_rows=caps, max_bytes=byte_caps)
def test_json_sends_leading_rows_within_the_caps(batches, max_rows, max_bytes) -> None:
    out = body("json", batches, max_rows, max_bytes)
    doc = json.loads(out)
    ids = [r["id"] for r in doc["rows"]]
    expected = all_ids(batches)
    assert ids == expected[: len(ids)] and doc["row_count"] == len(ids)
    assert doc["truncated"] == (len(ids) < len(expected))
    if max_rows is not None:
        assert len(ids) <= max_rows
    if max_bytes is not None:
        assert len(out) <= max_bytes


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(batches=results(), max_rows=caps, max_bytes=byte_caps)
def test_ndjson_marks_a_cut_with_its_last_line(batches, max_rows, max_bytes) -> None:
    out = body("ndjson", batches, max_rows, max_bytes)
    lines = [json.loads(line) for line in out.decode().split("\n")[:-1]]  # not splitlines: U+2028 is data
    expected = all_ids(batches)
    marker = lines.pop()[TRUNCATED] if lines and TRUNCATED in lines[-1] else None
    ids = [r["id"] for r in lines]
    assert ids == expected[: len(ids)]
    assert (marker is not None) == (len(ids) < len(expected))
    if marker is not None:
        assert marker["row_count"] == len(ids)
        assert marker["reason"] in ("max_result_rows", "max_result_bytes")
    if max_bytes is not None:
        assert len(out) <= max_bytes


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(batches=results(), max_bytes=byte_caps)
def test_csv_marks_a_cut_with_a_comment_line(batches, max_bytes) -> None:
    try:
        out = body("csv", batches, None, max_bytes)
    except ResultTooLarge:  # not even the header fits
        assert max_bytes is not None and max_bytes < 160 + len("id,s\n")
        return
    text = out.decode()
    cut = text.rstrip("\n").rsplit("\n", 1)[-1].startswith(f"# {TRUNCATED} ")
    table = pcsv.read_csv(
        io.BytesIO(out.rsplit(b"\n# ", 1)[0] + b"\n" if cut else out),
        convert_options=pcsv.ConvertOptions(column_types={"id": pa.int64(), "s": pa.string()}),
    )
    ids = table.column("id").to_pylist()
    expected = all_ids(batches)
    assert ids == expected[: len(ids)]
    assert cut == (len(ids) < len(expected))
    if cut:
        assert json.loads(text.rstrip("\n").rsplit(f"# {TRUNCATED} ", 1)[1])["row_count"] == len(ids)
    if max_bytes is not None:
        assert len(out) <= max_bytes


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(batches=results(), max_bytes=byte_caps, fmt=st.sampled_from(["arrow", "parquet"]))
def test_binary_formats_fail_rather_than_cut(batches, max_bytes, fmt) -> None:
    """Past the cap an Arrow or Parquet result raises: its first chunk (a 413) or a later one
    (the server then cuts the connection). Under the cap it is complete."""
    chunks = encode(fmt, SCHEMA, iter(batches), max_bytes=max_bytes)
    sent = 0
    try:
        for chunk in chunks:
            sent += len(chunk)
    except ResultTooLarge:
        assert max_bytes is not None and sent <= max_bytes
        return
    assert max_bytes is None or sent <= max_bytes


def test_steps_regroup_without_copies_and_bound_bytes() -> None:
    small = [pa.record_batch({"i": list(range(k * 2048, (k + 1) * 2048))}) for k in range(100)]
    grouped = list(steps(small))
    assert [t.num_rows for t in grouped] == [65_536, 65_536, 65_536, 8_192]
    assert grouped[0].column(0).chunks[0].buffers()[1].address == small[0].column(0).buffers()[1].address
    wide = pa.record_batch({"s": ["x" * 1_000_000] * 40})
    assert all(t.nbytes <= STEP_BYTES + 1_000_016 for t in steps([wide]))
    assert sum(t.num_rows for t in steps([wide])) == 40


def test_a_row_wider_than_the_limit_is_refused() -> None:
    wide = pa.record_batch({"s": ["x" * (MAX_ROW_BYTES + 1)]})
    for fmt in ("json", "ndjson", "csv", "arrow", "parquet"):
        with pytest.raises(ResultTooLarge, match="MiB"):
            body(fmt, [wide], None, None)


def test_the_encoders_duckdb_is_sandboxed_and_memory_limited() -> None:
    import duckdb

    from engine import formats

    original = formats.ENCODER_MEMORY_BYTES
    formats.configure_encoder(300 * 1024**2)
    try:
        encoder = formats._json_rows()
        batch = pa.record_batch({"a": [1]})
        limit = encoder.select(batch, "SELECT current_setting('memory_limit') AS m").column(0)[0].as_py()
        assert limit.startswith(("300", "286")), limit  # 300 MiB, shown in DuckDB's own units
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM read_text('/etc/hostname')",
            "COPY (SELECT 1) TO '/tmp/colonnade-encoder-escape.csv'",
        ):
            with pytest.raises(duckdb.Error):
                encoder.select(batch, sql)
        with pytest.raises(duckdb.Error):
            encoder.select(batch, "SET memory_limit = '100GB'")
        assert not os.path.exists("/tmp/colonnade-encoder-escape.csv")
    finally:
        formats.configure_encoder(original)
