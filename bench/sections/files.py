"""Query URLs as files (issue 17): a 1M-row Parquet export streamed (``GET``: the first byte
leaves as the engine produces it) against the same export materialised in the result store
(``HEAD`` for the length, then ``GET`` with a ``Range``, as Polars and fsspec open a URL).
Each phase sends new text (a nonce), so every materialisation is measured, not a stored file."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from bench import interleave, markdown
from bench.sections import Context, Target

NAME = "files"
ORDER = 55
TITLE = "Query URLs as files: streamed vs materialised Parquet"


def run(ctx: Context) -> dict:
    rows = ctx.args.export_rows
    sql = f"SELECT * FROM orders WHERE o_orderkey <= {rows * 4}"
    out: dict = {"rows": rows, "sql": sql}
    with ctx.colonnade(log_file=ctx.out / "colonnade-files.log") as col, httpx.Client(timeout=600) as client:

        def url(tag: str) -> str:
            return f"{col.url}/api/sql?format=parquet&q={quote(interleave.with_nonce(sql, tag))}"

        def streamed(tag: str) -> dict:
            return _download(client, url(tag), {})

        def materialised(tag: str) -> dict:
            started = time.perf_counter()
            head = client.head(url(tag))
            head.raise_for_status()
            figures = _download(client, url(tag), {"Range": "bytes=0-"}, started)
            return figures | {"head_s": round(time.perf_counter() - started - figures["total_s"], 3)}

        cmp = ctx.interleave({"streamed": streamed, "materialised": materialised})
    out["comparison"] = cmp
    out["first_byte_ratio"] = interleave.ratio(cmp, "materialised", "streamed", key="first_byte_s")
    out["total_ratio"] = interleave.ratio(cmp, "materialised", "streamed", key="total_s")
    return out


def _download(client: httpx.Client, url: str, headers: dict[str, str], started: float | None = None) -> dict:
    started = time.perf_counter() if started is None else started
    first = None
    size = 0
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    total = time.perf_counter() - started
    return {"value": total, "total_s": round(total, 3), "first_byte_s": round(first or total, 3), "bytes": size}


def targets(r: dict, meta: dict) -> list[Target]:
    if "comparison" not in r:
        return []
    machine = interleave.machine(r["comparison"])
    return [
        Target(
            "1M-row Parquet, materialised ÷ streamed: time to first byte",
            NAME,
            r["first_byte_ratio"],
            "×",
            "(report)",
            None,
            machine,
        ),
        Target(
            "1M-row Parquet, materialised ÷ streamed: total time",
            NAME,
            r["total_ratio"],
            "×",
            "(report)",
            None,
            machine,
        ),
    ]


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    cmp = r["comparison"]
    lines = [
        f"`{r['sql']}` as Parquet ({r['rows']:,} rows). *streamed*: one `GET`. *materialised*: `HEAD` (which "
        "writes the result store's file) then `GET` with `Range: bytes=0-` (served from the file); both timed "
        "from the first request.",
        "",
        "| | first byte, s | total, s |",
        "|---|---|---|",
    ]
    for name in ("streamed", "materialised"):
        first = interleave.spread(interleave.values(cmp, name, "first_byte_s"))
        total = interleave.spread(interleave.values(cmp, name, "total_s"))
        lines.append(f"| {name} | {markdown.fig(first, '', 3)} | {markdown.fig(total, '', 3)} |")
    lines += [
        "",
        f"Materialised ÷ streamed: first byte **{markdown.fig(r['first_byte_ratio'])}**, total "
        f"**{markdown.fig(r['total_ratio'])}**; load {markdown.machine(interleave.machine(cmp))}.",
        "",
    ]
    return lines
