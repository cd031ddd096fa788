"""Exports: the same 1M ``orders`` rows as JSON, CSV, Arrow and Parquet from Colonnade and from
ROAPI (both table modes), downloaded with curl, interleaved; Colonnade's Arrow export against
its ceiling (the same table written by pyarrow's IPC writer straight onto a socket,
bench/arrow_ceiling.py); and the server's RSS growth while it streams the 6M-row lineitem CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from bench import interleave, markdown, procstat, servers
from bench.clients import ARROW, curl, why
from bench.sections import Context, Target, log

NAME = "exports"
ORDER = 50
TITLE = "Exports"
FORMATS = {
    "json": "application/json",
    "csv": "text/csv",
    "arrow": ARROW,
    "parquet": "application/vnd.apache.parquet",
}
ROAPI_ACCEPT = FORMATS | {"csv": "application/csv"}
ROAPI_MODES = {"roapi_memory": True, "roapi_ondemand": False}


def add_arguments(p) -> None:
    p.add_argument("--export-rows", type=int, default=1_000_000)
    p.add_argument("--export-seconds", type=float, help="seconds of downloads per phase (default: --seconds / 2)")


Fetch = Callable[[str], dict]  # nonce -> curl's figures


def run(ctx: Context) -> dict:
    rows = ctx.args.export_rows
    seconds = ctx.args.export_seconds or ctx.seconds / 2
    # A key range, not LIMIT: TPC-H uses 8 order keys of every 32, so o_orderkey <= rows * 4
    # selects exactly ``rows`` rows (while they last). LIMIT would measure DuckDB's
    # order-preserving LIMIT (bench/NOTES.md §2), not the export path.
    sql = f"SELECT * FROM orders WHERE o_orderkey <= {rows * 4}"
    out: dict = {"rows": rows, "sql": sql, "seconds": seconds, "comparisons": {}, "ratios": {}, "failures": {}}
    launches = {"colonnade": ctx.colonnade(log_file=ctx.out / "colonnade-exports.log")}
    if ctx.roapi:
        tables = servers.roapi_tables(ctx.data, ctx.out / "roapi-tables")
        launches |= {mode: servers.roapi(tables, ctx.out, memory=memory) for mode, memory in ROAPI_MODES.items()}
    with servers.together(*launches.values()) as started:
        col, *rest = started
        peers = dict(zip(list(launches)[1:], rest, strict=True))
        for fmt in FORMATS:
            log(f"  {fmt} ...")
            contenders = {"colonnade": _downloads(col, _colonnade(col, sql, fmt), seconds)}
            for mode, srv in peers.items():
                fetch = _roapi(srv, sql, ROAPI_ACCEPT[fmt])
                try:
                    fetch(interleave.nonce())  # warm-up, and does ROAPI serve this format at all
                except Exception as exc:
                    out["failures"].setdefault(mode, {})[fmt] = why(exc)
                    continue
                contenders[mode] = _downloads(srv, fetch, seconds)
            _colonnade(col, sql, fmt)(interleave.nonce())
            cmp = ctx.interleave(contenders)
            out["comparisons"][fmt] = cmp
            if len(contenders) > 1:
                out["ratios"][fmt] = interleave.ratio(cmp, "colonnade", [m for m in contenders if m != "colonnade"])
        log("  arrow vs the pyarrow IPC ceiling ...")
        stream = ctx.out / "ceiling.arrows"
        curl(f"{col.url}/api/sql?q={quote(sql)}&format=arrow", output=str(stream))
        with servers.arrow_ceiling(stream) as ceiling:
            ceiling_fetch = lambda tag: curl(ceiling.url + "/")  # noqa: E731 - one table, no SQL
            ceiling_fetch("")
            cmp = ctx.interleave(
                {
                    "colonnade": _downloads(col, _colonnade(col, sql, "arrow"), seconds),
                    "pyarrow_ipc": _downloads(ceiling, ceiling_fetch, seconds),
                }
            )
        stream.unlink()
        out["comparisons"]["arrow_ceiling"] = cmp
        out["ratios"]["arrow_vs_ceiling"] = interleave.ratio(cmp, "pyarrow_ipc", "colonnade")  # = MB/s ratio
        out["arrow_mb_per_s"] = interleave.spread(interleave.values(cmp, "colonnade", "mb_per_s"), 1)
        out["lineitem_csv"] = _lineitem_csv(col)
    return out


def _colonnade(srv: servers.Server, sql: str, fmt: str) -> Fetch:
    return lambda tag: curl(f"{srv.url}/api/sql?q={quote(interleave.with_nonce(sql, tag))}&format={fmt}")


def _roapi(srv: servers.Server, sql: str, accept: str) -> Fetch:
    return lambda tag: curl(srv.url + "/api/sql", data=interleave.with_nonce(sql, tag), headers={"Accept": accept})


def _downloads(srv: servers.Server, fetch: Fetch, seconds: float) -> interleave.Phase:
    """A phase of downloads (at least one) under one nonce: seconds per download (curl's own
    total), MB/s, and the largest RSS high-water mark of any server process meanwhile."""

    def phase(tag: str) -> dict:
        pids, peak = srv.pids(), 0

        def one() -> dict:
            nonlocal peak
            procstat.reset_peak(pids)
            r = fetch(tag)
            peak = max(peak, procstat.peak_rss(pids))
            return r

        n, _, runs = interleave.repeat_for(seconds, one)
        s = sum(r["seconds"] for r in runs) / n  # type: ignore[index]
        size = runs[0]["bytes"]  # type: ignore[index]
        return {
            "value": round(s, 4),
            "downloads": n,
            "bytes": size,
            "mb_per_s": round(size / 1e6 / s, 1),
            "peak_rss_mb": round(peak / 1e6, 1),
        }

    return phase


def _lineitem_csv(col: servers.Server) -> dict:
    """RSS growth over the idle worker while it streams ``SELECT * FROM lineitem`` as CSV."""
    pids = col.pids()
    before = procstat.rss(pids)
    procstat.reset_peak(pids)
    with procstat.ProcessSampler(col.pid, 0.1) as sampler:
        r = curl(f"{col.url}/api/sql?q={quote('SELECT * FROM lineitem')}&format=csv")
    peak = max(procstat.peak_rss(pids), max((x for _, _, x in sampler.samples), default=0))
    return {
        "seconds": r["seconds"],
        "bytes": r["bytes"],
        "rss_before_mb": round(before / 1e6, 1),
        "rss_peak_mb": round(peak / 1e6, 1),
        "rss_growth_mb": round((peak - before) / 1e6, 1),
        "mb_per_s": round(r["bytes"] / 1e6 / r["seconds"], 1),
    }


def targets(r: dict, meta: dict) -> list[Target]:
    out, cmps = [], r.get("comparisons", {})
    for fmt, figure in r.get("ratios", {}).items():
        if fmt in FORMATS:
            out.append(
                Target(
                    f"export {r['rows']:,} orders rows as {fmt}: Colonnade time ÷ faster ROAPI mode",
                    NAME,
                    figure,
                    "×",
                    "≤ 1.00×",
                    lambda v: v <= 1.0,
                    interleave.machine(cmps[fmt]),
                )
            )
    if "arrow_mb_per_s" in r:
        machine = interleave.machine(cmps["arrow_ceiling"])
        out.append(
            Target(
                "Arrow export throughput, end to end",
                NAME,
                r["arrow_mb_per_s"],
                " MB/s",
                "≥ 500 MB/s",
                lambda v: v >= 500,
                machine,
            )
        )
        out.append(
            Target(
                "Arrow export ÷ raw pyarrow IPC write of the same table (MB/s, same curl)",
                NAME,
                r["ratios"]["arrow_vs_ceiling"],
                "×",
                "(report)",
                None,
                machine,
            )
        )
    big = r.get("lineitem_csv")
    if big:
        out.append(
            Target(
                "lineitem CSV export (the whole table), server RSS growth",
                NAME,
                interleave.spread([big["rss_growth_mb"]], 1),
                " MB",
                "≤ 300 MB",
                lambda v: v <= 300,
            )
        )
    return out


def _fmt_phase(p: dict) -> str:
    return f"{p['value']:.3f}"


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    cmps = r["comparisons"]
    L = [
        f"`{r['sql']}` ({r['rows']:,} rows), each phase under its own nonce, downloaded with curl (a native client, "
        f"so the client is not the bottleneck) for {r['seconds']:g} s (at least once); a phase's figure is seconds per "
        "download. Peak RSS = the largest kernel high-water mark (VmHWM, reset before each download) of any server "
        "process. Medians of the phases (min–max).",
        "",
        "| format | Colonnade s | ROAPI memory s | ROAPI on-demand s | Colonnade ÷ faster ROAPI | Colonnade MB/s | "
        "bytes | peak RSS MB: Colonnade / ROAPI memory / on-demand | load before → during · others |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt in FORMATS:
        cmp = cmps.get(fmt)
        if not cmp:
            continue
        col = [p for p in cmp["phases"] if p["contender"] == "colonnade"]
        secs = {
            m: markdown.fig(interleave.spread(interleave.values(cmp, m), 3), "", 3) for m in ("colonnade", *ROAPI_MODES)
        }
        rss = " / ".join(
            markdown.num(max((p["peak_rss_mb"] for p in cmp["phases"] if p["contender"] == m), default=None), 0)
            for m in ("colonnade", *ROAPI_MODES)
        )
        mbs = interleave.spread([p["mb_per_s"] for p in col], 0)["median"]
        L.append(
            f"| {fmt} | {secs['colonnade']} | {secs['roapi_memory']} | {secs['roapi_ondemand']} | "
            f"**{markdown.fig(r['ratios'].get(fmt))}** | {mbs:.0f} | {col[0]['bytes']:,} | {rss} | "
            f"{markdown.machine(interleave.machine(cmp))} |"
        )
    L.append("")
    for mode, fails in r.get("failures", {}).items():
        L += [f"- {mode} could not export {fmt}: {w}" for fmt, w in fails.items()]
    ceiling = cmps.get("arrow_ceiling")
    if ceiling:
        top = interleave.spread(interleave.values(ceiling, "pyarrow_ipc", "mb_per_s"), 0)
        L += [
            "",
            f"**Arrow, end to end vs its ceiling**: Colonnade {markdown.fig(r['arrow_mb_per_s'], ' MB/s', 0)}; the same "
            f"table written by pyarrow's IPC writer straight onto a socket (bench/arrow_ceiling.py, same curl) "
            f"{markdown.fig(top, ' MB/s', 0)}; ratio **{markdown.fig(r['ratios']['arrow_vs_ceiling'])}**; load "
            f"{markdown.machine(interleave.machine(ceiling))}.",
        ]
    big = r.get("lineitem_csv")
    if big:
        L += [
            "",
            f"`lineitem` CSV export (`SELECT * FROM lineitem`, {big['bytes'] / 1e6:.0f} MB, one download): "
            f"{big['seconds']:.2f} s ({big['mb_per_s']:.0f} MB/s); server RSS {big['rss_before_mb']} MB before, "
            f"{big['rss_peak_mb']} MB peak: growth **{big['rss_growth_mb']} MB**.",
        ]
    L.append("")
    for key, cmp in cmps.items():
        L += markdown.details(f"rounds: {key} (seconds per download)", markdown.rounds_table(cmp, _fmt_phase))
    if "exports.png" in images:
        L += [f"![exports]({images['exports.png']})", ""]
    return L


def plot(r: dict, meta: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    cmps = r["comparisons"]
    fmts = [f for f in FORMATS if f in cmps]
    peers = [p for p in ("colonnade", *ROAPI_MODES) if any(p in cmps[f]["contenders"] for f in fmts)]
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, peer in enumerate(peers):
        figs = [interleave.spread(interleave.values(cmps[f], peer), 3) for f in fmts]
        med = [f["median"] or 0 for f in figs]
        err = [
            [m - (f["min"] or 0) for m, f in zip(med, figs, strict=True)],
            [(f["max"] or 0) - m for m, f in zip(med, figs, strict=True)],
        ]
        ax.bar([j + i * 0.27 for j in range(len(fmts))], med, 0.27, yerr=err, capsize=3, label=peer)
    ax.set_xticks([j + 0.27 for j in range(len(fmts))], fmts)
    ax.set_ylabel("seconds per download (median, min–max)")
    ax.set_title(f"export {r['rows']:,} orders rows")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "exports.png", dpi=110)
    plt.close(fig)
    return ["exports.png"]
