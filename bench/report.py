"""results.json → BENCHMARKS.md, PNG plots under bench/plots/ and README's "## Benchmarks" table.

python -m bench.report bench/results/results.json [--benchmarks BENCHMARKS.md] [--plots bench/plots]
    [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "make bench"


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**MISSED**")


def targets(r: dict) -> list[dict]:
    """Every target of issue 6 with its measured value (all from this one run)."""
    out = []

    def add(name: str, value: str, target: str, met: bool | None, section: str) -> None:
        out.append({"name": name, "value": value, "target": target, "met": met, "section": section})

    t = r.get("tpch", {})
    ratios = t.get("ratios", {})
    if "colonnade_vs_inprocess" in ratios:
        v = ratios["colonnade_vs_inprocess"]
        add(
            f"TPC-H 22 queries SF{r['meta']['scale']:g}, total time vs in-process DuckDB",
            _x(v),
            "≤ 1.10×",
            v <= 1.10,
            "tpch",
        )
    for mode in ("roapi_memory", "roapi_ondemand"):
        key = f"{mode}_vs_colonnade"
        if key in ratios:
            v = ratios[key]
            n = ratios.get(f"{mode}_queries_compared")
            add(
                f"TPC-H total, ROAPI {mode.split('_')[1]} time ÷ Colonnade ({n} queries both ran)",
                _x(v),
                "≥ 5× (Colonnade faster)",
                v >= 5,
                "tpch",
            )
    c = r.get("concurrency", {})
    for key, label in (("1w_q1", "Q1"), ("1w_mix", "mix")):
        if key in c.get("ratios", {}):
            v = c["ratios"][key]
            add(
                f"8 clients {label} throughput vs 8 in-process threads (1 worker)",
                _x(v),
                "≥ 0.90×",
                v >= 0.9,
                "concurrency",
            )
    for w in (1, 2):
        for k in ("q1", "mix"):
            h = c.get(f"colonnade_{w}w_{k}", {}).get("health", {})
            if h.get("p99_ms") is not None:
                add(
                    f"/health p99 under the 8-client {k} load ({w} worker{'s' if w > 1 else ''})",
                    f"{h['p99_ms']:.1f} ms",
                    "≤ 25 ms",
                    h["p99_ms"] <= 25,
                    "concurrency",
                )
    g = r.get("gil", {})
    if "ratio_colonnade_vs_naive" in g:
        add(
            "8-client mix, Colonnade ÷ naive pandas service (queries/s)",
            _x(g["ratio_colonnade_vs_naive"]),
            "(report)",
            None,
            "gil",
        )
    s = r.get("small", {})
    if "ratio" in s:
        add(
            "cached point query ÷ Litestar hello-world (wrk, 32 conns, 2 workers)",
            _x(s["ratio"]),
            "≥ 0.50×",
            s["ratio"] >= 0.5,
            "small",
        )
    e = r.get("exports", {})
    for fmt, v in e.get("ratios_vs_best_roapi", {}).items():
        add(
            f"export {e['rows']:,} orders rows as {fmt}: time ÷ faster ROAPI mode",
            _x(v),
            "≤ 1.00×",
            v <= 1.0,
            "exports",
        )
    arrow = e.get("colonnade", {}).get("arrow")
    if arrow:
        add(
            "Arrow export throughput",
            f"{arrow['mb_per_s']:.0f} MB/s",
            "≥ 500 MB/s",
            arrow["mb_per_s"] >= 500,
            "exports",
        )
    big = e.get("lineitem_csv")
    if big:
        add(
            f"{big['bytes'] and e.get('lineitem_rows', 6_001_215) / 1e6:.0f}M-row lineitem CSV export, server RSS growth",
            f"{big['rss_growth_mb']:.0f} MB",
            "≤ 300 MB",
            big["rss_growth_mb"] <= 300,
            "exports",
        )
    i = r.get("ingest", {})
    ratios = i.get("ratios", {})
    if "csv" in ratios:
        add(
            f"ingest lineitem CSV SF{i['scale']:g} → Delta: time ÷ faster of DuckDB COPY, Polars sink_parquet",
            _x(ratios["csv"]),
            "≤ 1.20×",
            ratios["csv"] <= 1.2,
            "ingest",
        )
        add("ingest lineitem CSV, peak RSS", f"{i['peak_rss_mb']} MB", "< 1500 MB", i["peak_rss_mb"] < 1500, "ingest")
    gov = r.get("governance", {})
    if "ratio_isolated_vs_inprocess" in gov.get("tpch", {}):
        v = gov["tpch"]["ratio_isolated_vs_inprocess"]
        add("TPC-H 22 on Polars, isolated workers ÷ in-process", _x(v), "≤ 1.10×", v <= 1.10, "governance")
    if "kill_latency_ms" in gov.get("kill", {}):
        k = gov["kill"]["kill_latency_ms"]
        add(
            "runaway Polars query: cancel → worker gone (median / max)",
            f"{k['median']} / {k['max']} ms",
            "(report)",
            None,
            "governance",
        )
    if "max_rss_growth_mb" in gov.get("wide_exports", {}):
        w = gov["wide_exports"]
        v = w["max_rss_growth_mb"]
        add(
            f"{w['result_mb']} MB wide-row result, every format: worst server RSS growth",
            f"{v:.0f} MB",
            "≤ 300 MB",
            v <= 300,
            "governance",
        )
    for label in ("fail", "quarantine"):
        if f"ndjson_{label}" in ratios:
            add(
                f"ingest lineitem NDJSON ({label} mode): time ÷ faster of DuckDB COPY, Polars sink_parquet",
                _x(ratios[f"ndjson_{label}"]),
                "(report)",
                None,
                "ingest",
            )
    return out


def headline(r: dict) -> str:
    lines = ["| comparison (one run, medians) | measured | target | |", "|---|---|---|---|"]
    for t in targets(r):
        lines.append(f"| {t['name']} | {t['value']} | {t['target']} | {_ok(t['met'])} |")
    return "\n".join(lines)


def plots(r: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    made = []
    t = r.get("tpch", {})
    if "per_query_s" in t:
        systems = [s for s in ("colonnade", "inprocess", "roapi_memory", "roapi_ondemand") if s in t["totals_s"]]
        qs = list(t["per_query_s"])
        fig, ax = plt.subplots(figsize=(13, 4.5))
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            vals = [t["per_query_s"][q][s] or 0 for q in qs]
            ax.bar([j + i * width for j in range(len(qs))], vals, width, label=s)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(qs))], [f"Q{q}" for q in qs])
        ax.set_yscale("log")
        ax.set_ylabel("seconds (median, log)")
        ax.set_title(f"TPC-H SF{r['meta']['scale']:g}, one client, Arrow responses")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "tpch.png", dpi=110)
        plt.close(fig)
        made.append("tpch.png")
    c = r.get("concurrency", {})
    if "inprocess_q1" in c:
        fig, ax = plt.subplots(figsize=(8, 4))
        groups = ["q1", "mix"]
        series = [
            ("in-process, 8 threads", "inprocess_{}"),
            ("Colonnade 1 worker", "colonnade_1w_{}"),
            ("Colonnade 2 workers", "colonnade_2w_{}"),
        ]
        for i, (label, key) in enumerate(series):
            ax.bar(
                [j + i * 0.27 for j in range(2)],
                [c.get(key.format(g), {}).get("qps", 0) for g in groups],
                0.27,
                label=label,
            )
        ax.set_xticks([j + 0.27 for j in range(2)], ["TPC-H Q1", f"mix {c['mix']}"])
        ax.set_ylabel("queries / s")
        ax.set_title(f"{c['clients']} clients for {c['duration_s']:g} s")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "concurrency.png", dpi=110)
        plt.close(fig)
        made.append("concurrency.png")
    g = r.get("gil", {})
    if "naive" in g and "colonnade" in g:
        fig, ax = plt.subplots(figsize=(8, 4))
        for name in ("naive", "colonnade"):
            tl = g[name]["cpu"]["timeline"]
            ax.plot([p[0] for p in tl], [p[1] for p in tl], label=f"{name} ({g[name]['qps']:.1f} q/s)")
        ax.axhline(1, ls=":", c="grey")
        ax.axhline(r["meta"]["cores"], ls="--", c="grey")
        ax.set_ylim(0, r["meta"]["cores"] + 0.3)
        ax.set_xlabel("seconds into the load")
        ax.set_ylabel("cores busy (server + workers)")
        ax.set_title("Same 8-client mix: naive pandas service vs Colonnade")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "gil_cpu.png", dpi=110)
        plt.close(fig)
        made.append("gil_cpu.png")
    s = r.get("small", {})
    if "ratio" in s:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.bar(
            ["Litestar hello-world", "Colonnade cached\npoint query"],
            [s["hello_rps"], s["colonnade_rps"]],
            color=["grey", "tab:blue"],
        )
        ax.set_ylabel("requests / s (wrk, 32 connections)")
        ax.set_title("2 uvicorn workers")
        fig.tight_layout()
        fig.savefig(out / "small.png", dpi=110)
        plt.close(fig)
        made.append("small.png")
    e = r.get("exports", {})
    if e.get("colonnade"):
        fmts = list(e["colonnade"])
        peers = [p for p in ("colonnade", "roapi_memory", "roapi_ondemand") if e.get(p)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for i, p in enumerate(peers):
            axes[0].bar(
                [j + i * 0.27 for j in range(len(fmts))],
                [e[p].get(f, {}).get("seconds", 0) for f in fmts],
                0.27,
                label=p,
            )
            axes[1].bar(
                [j + i * 0.27 for j in range(len(fmts))],
                [e[p].get(f, {}).get("peak_rss_mb", 0) for f in fmts],
                0.27,
                label=p,
            )
        for ax, label in zip(axes, ("seconds (median)", "peak server RSS, MB"), strict=True):
            ax.set_xticks([j + 0.27 for j in range(len(fmts))], fmts)
            ax.set_ylabel(label)
        axes[0].set_title(f"export {e['rows']:,} orders rows")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(out / "exports.png", dpi=110)
        plt.close(fig)
        made.append("exports.png")
    return made


def benchmarks_md(r: dict, plot_dir: str, made: list[str], notes: str) -> str:
    m = r["meta"]
    L = [
        "# Benchmarks",
        "",
        f"Produced by `{COMMAND}` (`python -m bench.harness` then `python -m bench.report`); every ratio below",
        "was measured in this one run, each figure a median of the repetitions noted.",
        "",
        f"- **Date**: {m['date']}; commit `{m.get('commit')}`; total run {m.get('total_seconds', '?')} s",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, host `{m['host']}` — shared with other "
        "engineers' test runs",
        f"- **Load average** (1/5/15 min) before: {_load(m.get('load_before'))}; after: {_load(m.get('load_after'))} "
        "(during the run most of the load is the benchmark's own clients and servers; per section: "
        + ", ".join(f"{k.removeprefix('load_after_')} {v[0]:.1f}" for k, v in m.items() if k.startswith("load_after_"))
        + ")",
        f"- **Software**: Python {m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, {m.get('roapi') or 'ROAPI not installed'}",
        f"- **Data**: TPC-H scale {m['scale']:g} (tpchgen-cli), managed Delta tables; ROAPI gets the live Parquet files of each table",
        f"- Skipped here: {', '.join(m.get('skipped') or []) or 'nothing'}",
        "",
        "## Headline",
        "",
        headline(r),
        "",
    ]
    t = r.get("tpch", {})
    if "per_query_s" in t:
        systems = [s for s in ("colonnade", "inprocess", "roapi_memory", "roapi_ondemand") if s in t["totals_s"]]
        L += [
            "## 1. TPC-H, 22 queries, one client, Arrow responses",
            "",
            f"Median of {t['runs']} timed runs after a warm-up, per query, in seconds. In-process = DuckDB in the "
            "benchmark process on the same Parquet files with Colonnade's per-worker settings (threads, memory); "
            "Colonnade = `POST /api/sql` with `Accept: application/vnd.apache.arrow.stream` through HTTP (result "
            "cache off); ROAPI = `POST /api/sql`, same Accept header, same SQL text.",
            "",
            "| query | " + " | ".join(systems) + " | Colonnade ÷ in-process |",
            "|---|" + "---|" * (len(systems) + 1),
        ]
        for q, row in t["per_query_s"].items():
            ratio = row["colonnade"] / row["inprocess"] if row.get("colonnade") and row.get("inprocess") else None
            L.append(f"| Q{q} | " + " | ".join(_f(row.get(s)) for s in systems) + f" | {_x(ratio)} |")
        L.append(
            "| **total** | "
            + " | ".join(f"**{_f(t['totals_s'][s])}**" for s in systems)
            + f" | **{_x(t['ratios'].get('colonnade_vs_inprocess'))}** |"
        )
        L.append("")
        for k, v in t["ratios"].items():
            L.append(f"- `{k}` = {v}")
        if t.get("failures"):
            L += [
                "",
                "Queries a system could not run (ROAPI totals above leave them out; its ratios compare only the "
                "queries it ran):",
                "",
            ]
            for s, fails in t["failures"].items():
                for q, why in fails.items():
                    L.append(f"- {s} Q{q}: {why}")
        if t.get("row_count_mismatch"):
            L.append(f"\nRow counts differ between systems for: {', '.join('Q' + q for q in t['row_count_mismatch'])}")
        if "tpch.png" in made:
            L += ["", f"![TPC-H per query]({plot_dir}/tpch.png)"]
        L.append("")
    c = r.get("concurrency", {})
    if "inprocess_q1" in c:
        L += [
            "## 2. Concurrency: 8 clients for {:g} s".format(c["duration_s"]),
            "",
            f"Each client loops TPC-H Q1, or cycles through the mix {c['mix']}, with Arrow responses (result cache off). "
            "In-process: 8 threads, each with its own DuckDB cursor. `/health` is probed every 50 ms from a separate "
            "process during each HTTP load. CPU = cores busy, summed over the server and its workers.",
            "",
            "| setup | queries/s | ÷ in-process | p50 ms | p99 ms | /health p50 | /health p99 | server cores | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for k in ("q1", "mix"):
            base = c[f"inprocess_{k}"]
            L.append(
                f"| in-process, {k} | {base['qps']:.2f} | 1.00× | {base['p50_ms']} | {base['p99_ms']} | | | | {base['errors']} |"
            )
            for w in (1, 2):
                x = c.get(f"colonnade_{w}w_{k}")
                if x:
                    h = x.get("health", {})
                    L.append(
                        f"| Colonnade {w} worker{'s' if w > 1 else ''}, {k} | {x['qps']:.2f} | "
                        f"{_x(x['qps'] / base['qps'])} | {x['p50_ms']} | {x['p99_ms']} | {h.get('p50_ms')} | "
                        f"{h.get('p99_ms')} | {x['cpu']['mean_cores']:.2f} | {x['errors']} |"
                    )
        if "concurrency.png" in made:
            L += ["", f"![concurrency]({plot_dir}/concurrency.png)"]
        L.append("")
    g = r.get("gil", {})
    if "naive" in g:
        L += [
            "## 3. The GIL story: a naive pandas service vs Colonnade",
            "",
            f"Same {g['clients']} clients, same mix {g['mix']}, {g['duration_s']:g} s, JSON responses. The naive "
            "service (`bench/naive_service.py`) loads the Parquet files into pandas at start-up and computes each "
            "query with pandas inside a Litestar handler (one uvicorn process, handlers in its thread pool).",
            "",
            "| server | queries/s | p50 ms | p99 ms | mean cores busy | max cores (0.25 s samples) | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("naive", "colonnade"):
            x = g[name]
            L.append(
                f"| {name} | {x['qps']:.2f} | {x['p50_ms']} | {x['p99_ms']} | {x['cpu']['mean_cores']:.2f} | "
                f"{x['cpu']['max_cores']:.2f} | {x['cpu']['peak_rss_mb']} |"
            )
        L += ["", f"Colonnade ÷ naive: **{_x(g['ratio_colonnade_vs_naive'])}** queries/s."]
        if "gil_cpu.png" in made:
            L += ["", f"![CPU]({plot_dir}/gil_cpu.png)"]
        L.append("")
    s = r.get("small", {})
    if "ratio" in s:
        L += [
            "## 4. Small cached queries (wrk)",
            "",
            f"`wrk -t2 -c32 -d{s['seconds']:g}s`, {s['runs']} interleaved runs each, 2 uvicorn workers for both. "
            f"Colonnade: `GET /api/sql?q={s['query']}` (result cache on, so after the first request per worker it is "
            "a cache hit); hello-world: `bench/hello_app.py`, a bare Litestar route under the same uvicorn options. "
            "wrk runs on the same 2 cores.",
            "",
            "| server | req/s (median) | runs | p99 ms (last run) |",
            "|---|---|---|---|",
        ]
        for name in ("hello", "colonnade"):
            L.append(
                f"| {name} | {s[f'{name}_rps']:.0f} | {', '.join(format(x['rps'], '.0f') for x in s[name])} | "
                f"{s[name][-1]['p99_ms']} |"
            )
        L += ["", f"Ratio: **{_x(s['ratio'])}**"]
        if "small.png" in made:
            L += ["", f"![small]({plot_dir}/small.png)"]
        L.append("")
    elif s.get("skipped"):
        L += ["## 4. Small cached queries (wrk)", "", f"Skipped: {s['skipped']}", ""]
    e = r.get("exports", {})
    if e.get("colonnade"):
        L += [
            "## 5. Exports",
            "",
            f"`{e.get('sql', 'SELECT * FROM orders LIMIT ' + str(e['rows']))}` ({e['rows']:,} rows) downloaded with curl (a native client, so the client is not "
            f"the bottleneck), median of {e['runs']} runs; peak RSS = the server's kernel high-water mark (VmHWM, "
            "reset before each run).",
            "",
            "| format | Colonnade s | ROAPI memory s | ROAPI on-demand s | Colonnade ÷ faster ROAPI | Colonnade MB/s | "
            "bytes | Colonnade peak RSS MB | ROAPI memory / on-demand peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for fmt, x in e["colonnade"].items():
            rm, ro = e.get("roapi_memory", {}).get(fmt, {}), e.get("roapi_ondemand", {}).get(fmt, {})
            L.append(
                f"| {fmt} | {_f(x['seconds'])} | {_f(rm.get('seconds'))} | {_f(ro.get('seconds'))} | "
                f"{_x(e.get('ratios_vs_best_roapi', {}).get(fmt))} | {x['mb_per_s']:.0f} | {x['bytes']:,} | "
                f"{x['peak_rss_mb']} | {rm.get('peak_rss_mb', '—')} / {ro.get('peak_rss_mb', '—')} |"
            )
        lim = e.get("colonnade_arrow_limit")
        if lim:
            L += [
                "",
                f"The same rows as `SELECT * FROM orders LIMIT {e['rows']}` in Arrow: {lim['seconds']:.3f} s "
                f"({lim['mb_per_s']:.0f} MB/s) — DuckDB's order-preserving LIMIT, not the export path (bench/NOTES.md §2).",
            ]
        big = e.get("lineitem_csv")
        if big:
            L += [
                "",
                f"6M-row `lineitem` CSV export (`SELECT * FROM lineitem`, {big['bytes'] / 1e6:.0f} MB): "
                f"{big['seconds']:.2f} s ({big['mb_per_s']:.0f} MB/s); server RSS {big['rss_before_mb']} MB before, "
                f"{big['rss_peak_mb']} MB peak: growth **{big['rss_growth_mb']} MB**.",
            ]
        if "exports.png" in made:
            L += ["", f"![exports]({plot_dir}/exports.png)"]
        L.append("")
    p = r.get("profile", {})
    if p.get("shares"):
        sh = p["shares"]
        L += [
            "## 6. Profile under load",
            "",
            f"py-spy, {p['seconds']} s at 100 Hz on the 1-worker server while {p['load']} ran "
            f"([flame graph, SVG]({plot_dir}/flamegraph.svg)). Shares come from a second `--native` recording of the "
            "same load: each sample of a busy Python thread is classified by its innermost frames.",
            "",
            "| where the server's Python threads were | share of busy samples |",
            "|---|---|",
        ]
        labels = {
            "native_engine": "native engine code (DuckDB, Arrow, Parquet; incl. DuckDB's caller waiting on its workers)",
            "python": "Python frames (Litestar, uvicorn, asyncio, Colonnade, interpreter)",
            "gil_or_lock_wait": "waiting for the GIL or a lock",
            "native_other": "other native code (socket I/O, libc, file system)",
        }
        for k, v in sh["share"].items():
            L.append(f"| {labels.get(k, k)} | {v * 100:.1f}% |")
        L += [
            "",
            f"{sh['busy_samples']} busy samples, {sh['idle_samples']} idle (threads parked waiting for work). "
            "DuckDB's own worker threads are not Python threads and are not sampled; their time shows up as the "
            "server's CPU above. Top frames:",
            "",
        ]
        for frame, n in sh.get("top", [])[:10]:
            L.append(f"- {n} × `{frame}`")
        L.append("")
    elif p.get("skipped"):
        L += ["## 6. Profile under load", "", f"Skipped: {p['skipped']}", ""]
    i = r.get("ingest", {})
    if i.get("results"):
        L += [
            "## 7. Ingestion",
            "",
            f"`python -m bench.ingest` inside the harness: TPC-H SF{i['scale']:g} `lineitem` as CSV ({i['csv_mb']} MB) "
            f"and NDJSON ({i['ndjson_mb']} MB) into a new Delta table with `colonnade ingest`, against DuckDB's "
            "`COPY (FROM read_…) TO 'x.parquet'` and Polars' `scan_…().sink_parquet()`. Each contender runs in a "
            f"fresh process (wall time and that process's peak RSS), best of {i['runs']}, interleaved. The `read:` rows "
            "time each library reading the CSV into Arrow batches. NDJSON in quarantine mode reads the input twice "
            "(once for the rows, once line by line for bad ones).",
            "",
            "| contender | seconds | peak RSS MB |",
            "|---|---|---|",
        ]
        for name, v in i["results"].items():
            L.append(f"| {name} | {v['s']:.2f} | {v['rss_mb']} |")
        L.append("")
    L += governance_md(r.get("governance", {}))
    for name in ("tpch", "concurrency", "gil", "small", "exports", "profile", "ingest", "governance"):
        if "error" in r.get(name, {}):
            L.append(f"**Section {name} failed in this run:** `{r[name]['error']}`\n")
    if notes:
        L += ["## Missed targets and what explains them", "", notes.strip(), ""]
    return "\n".join(L) + "\n"


def governance_md(g: dict) -> list[str]:
    if "tpch" not in g:
        return []
    t, k, x = g["tpch"], g["kill"], g["transfer"]
    L = [
        "## 8. Governance: Polars in killable workers",
        "",
        "`python -m bench.governance` inside the harness. Polars runs in worker processes (a pool, Arrow IPC "
        "frames over a pipe, RLIMIT_AS) so that a timeout or a hang-up can kill it; the in-process side is "
        f"Polars in the benchmark process as the backend ran it before (`collect()`), {g['polars_threads']} "
        f"threads on both sides, median of {t['runs']}, interleaved.",
        "",
        "| query | in-process s | isolated s | ratio |",
        "|---|---|---|---|",
    ]
    for q, row in t["per_query_s"].items():
        L.append(
            f"| Q{q} | {_f(row['inprocess'])} | {_f(row['isolated'])} | {_x(row['isolated'] / row['inprocess'])} |"
        )
    L += [
        f"| **total** | {_f(t['totals_s']['inprocess'])} | {_f(t['totals_s']['isolated'])} | "
        f"**{_x(t['ratio_isolated_vs_inprocess'])}** |",
        "",
        f"One big result through the pipe (`SELECT * FROM lineitem`, {x['isolated']['mb']} MB of Arrow): "
        f"{x['inprocess']['seconds']} s in-process, {x['isolated']['seconds']} s isolated "
        f"({x['isolated']['mb_per_s']} MB/s).",
        "",
        f"Stopping a runaway query (`{k['query']}`, {k['trials']} trials): the worker is gone "
        f"{k['kill_latency_ms']['median']} ms (median; max {k['kill_latency_ms']['max']} ms) after the cancel; "
        f"RSS of the process and its workers {k['rss_mb']['before']} MB before, {k['rss_mb']['peak']} MB while it "
        f"ran, {k['rss_mb']['after']} MB once the replacement worker was up.",
        "",
    ]
    w = g.get("wide_exports", {})
    if w:
        L += [
            f"A {w['result_mb']} MB result of wide rows, streamed in each format: the server process's RSS growth "
            "(status, MB sent, seconds, growth MB).",
            "",
            "| result | " + " | ".join(FORMATS_ORDER) + " |",
            "|---|" + "---|" * len(FORMATS_ORDER),
        ]
        for label, row in w.items():
            if isinstance(row, dict):
                cells = [
                    f"{v['status']}, {v['mb']:.0f} MB, {v['seconds']} s, **{v['rss_growth_mb']:.0f}**"
                    for v in (row[f] for f in FORMATS_ORDER)
                ]
                L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")
    return L


FORMATS_ORDER = ("json", "ndjson", "csv", "arrow", "parquet")


def _load(x: list | None) -> str:
    return " / ".join(f"{v:.2f}" for v in x) if x else "?"


def readme_section(r: dict, readme: Path) -> None:
    text = readme.read_text()
    start = text.index("## Benchmarks")
    end = text.find("\n## ", start + 3)
    m = r["meta"]
    body = (
        f"## Benchmarks\n\n`make bench` runs every comparison of issue 6 in one go (about 8–10 minutes on 2 cores) "
        f"and writes [BENCHMARKS.md](BENCHMARKS.md) and the plots in `bench/plots/`; `bench/NOTES.md` records each "
        f"optimisation attempt. Latest run: {m['date']}, TPC-H SF{m['scale']:g}, {m['cores']} cores, "
        f"load average before {_load(m.get('load_before'))}. Every ratio was measured in that one run.\n\n"
        f"{headline(r)}\n"
    )
    readme.write_text(text[:start] + body + (text[end:] if end != -1 else ""))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--plots", default=str(ROOT / "bench" / "plots"))
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    p.add_argument("--notes", default=str(ROOT / "bench" / "MISSED.md"), help="hand-written analysis of missed targets")
    args = p.parse_args(argv)
    r = json.loads(Path(args.results).read_text())
    plot_dir = Path(args.plots)
    made = plots(r, plot_dir)
    svg = Path(args.results).parent / "plots" / "flamegraph.svg"
    if svg.exists() and svg.parent.resolve() != plot_dir.resolve():
        plot_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(svg, plot_dir / "flamegraph.svg")
    bench_md = Path(args.benchmarks)
    try:
        rel = plot_dir.resolve().relative_to(bench_md.parent.resolve())
    except ValueError:
        rel = plot_dir.resolve()
    notes = Path(args.notes).read_text() if Path(args.notes).exists() else ""
    bench_md.write_text(benchmarks_md(r, str(rel), made, notes))
    if args.readme:
        readme_section(r, Path(args.readme))


if __name__ == "__main__":
    main()
