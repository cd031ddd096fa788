"""A cached point query vs a Litestar hello-world on the same server stack: wrk, 32 connections,
2 workers each, phases interleaved. The result cache is what is measured here, so the same SQL
text is sent in every phase (and checked to be a cache hit)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from bench import interleave, markdown, servers
from bench.clients import wrk
from bench.sections import Context, Target

NAME = "small"
ORDER = 40
TITLE = "Small cached queries (wrk)"
POINT_QUERY = "SELECT o_orderkey, o_orderstatus, o_totalprice, o_orderdate FROM orders WHERE o_orderkey = 42"
CONNECTIONS = 32


def run(ctx: Context) -> dict:
    if not ctx.wrk:
        return {"skipped": "wrk is not installed"}
    out: dict = {"connections": CONNECTIONS, "workers": 2, "query": POINT_QUERY}
    with servers.together(ctx.colonnade(workers=2, cache=True), servers.hello(2)) as (col, hw):
        urls = {"hello": hw.url + "/", "colonnade": col.url + "/api/sql?q=" + quote(POINT_QUERY)}
        for url in urls.values():  # warm every worker (and its result cache): new connections reach both
            _cache_headers(url)
        out["cache_before"] = _cache_headers(urls["colonnade"])

        def phase(url: str) -> interleave.Phase:
            return lambda tag: (r := wrk(url, ctx.seconds, CONNECTIONS)) | {"value": r["rps"]}

        cmp = ctx.interleave({name: phase(url) for name, url in urls.items()})
        out["cache_after"] = _cache_headers(urls["colonnade"])
    out["comparison"] = cmp
    out["ratio"] = interleave.ratio(cmp, "colonnade", "hello")
    return out


def _cache_headers(url: str, n: int = 8) -> dict[str, int]:
    """``X-Colonnade-Cache`` of ``n`` requests, each on a new connection (so on either worker)."""
    seen: dict[str, int] = {}
    for _ in range(n):
        header = httpx.get(url).headers.get("X-Colonnade-Cache", "none")
        seen[header] = seen.get(header, 0) + 1
    return seen


def targets(r: dict, meta: dict) -> list[Target]:
    if "ratio" not in r:
        return []
    return [
        Target(
            "cached point query ÷ Litestar hello-world, requests/s (wrk, 32 connections, 2 workers)",
            NAME,
            r["ratio"],
            "×",
            "≥ 0.80×",
            lambda v: v >= 0.8,
            interleave.machine(r["comparison"]),
        )
    ]


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    if "skipped" in r:
        return [f"Skipped: {r['skipped']}", ""]
    cmp = r["comparison"]
    L = [
        f"`wrk -t2 -c{r['connections']} -d{max(1, round(meta['seconds']))}s` per phase, 2 uvicorn workers for both. "
        f"Colonnade: `GET /api/sql?q={r['query']}` with the result cache on (the same text every time: the cache is "
        f"what is measured; `X-Colonnade-Cache` of 8 requests on new connections before the pairs: {r['cache_before']}, "
        f"after: {r['cache_after']}); "
        "hello-world: `bench/hello_app.py`, a bare Litestar route under the same uvicorn options. wrk runs on the "
        "same 2 cores.",
        "",
        "| server | req/s, median (min–max) | p99 ms, median | non-2xx |",
        "|---|---|---|---|",
    ]
    for name in ("hello", "colonnade"):
        ps = [p for p in cmp["phases"] if p["contender"] == name]
        p99 = interleave.spread([p["p99_ms"] for p in ps if p["p99_ms"] is not None], 2)["median"]
        L.append(
            f"| {name} | {markdown.fig(interleave.spread(interleave.values(cmp, name), 0), '', 0)} | {p99} | "
            f"{sum(p['non_2xx'] for p in ps)} |"
        )
    L += [
        "",
        f"Ratio: **{markdown.fig(r['ratio'])}**; load {markdown.machine(interleave.machine(cmp))}.",
        "",
        *markdown.details(
            "rounds (requests/s)",
            markdown.rounds_table(
                cmp,
                lambda p: f"{p['value']:.0f}",
                lambda ps: f"{ps['colonnade']['value'] / ps['hello']['value']:.3f}" if len(ps) == 2 else "—",
            ),
        ),
    ]
    if "small.png" in images:
        L += [f"![small]({images['small.png']})", ""]
    return L


def plot(r: dict, meta: dict, out: Path) -> list[str]:
    if "skipped" in r:
        return []
    import matplotlib.pyplot as plt

    cmp = r["comparison"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, name in enumerate(("hello", "colonnade")):
        xs = interleave.values(cmp, name)
        ax.scatter([i] * len(xs), xs, color=("grey", "tab:blue")[i], zorder=3)
        ax.hlines(interleave.spread(xs)["median"], i - 0.25, i + 0.25, color="black")
    ax.set_xticks([0, 1], ["Litestar hello-world", "Colonnade cached\npoint query"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(0, None)
    ax.set_ylabel("requests / s per phase (line: median)")
    ax.set_title("wrk, 32 connections, 2 uvicorn workers")
    fig.tight_layout()
    fig.savefig(out / "small.png", dpi=110)
    plt.close(fig)
    return ["small.png"]
