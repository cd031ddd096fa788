"""TPC-H, 22 queries, one client, Arrow: Colonnade over HTTP vs in-process DuckDB, and ROAPI
(in memory and on demand) vs Colonnade. A phase is whole passes over the queries (as many as
fill ``--seconds``, at least one); its figure is the seconds a pass takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import interleave, markdown, servers
from bench.clients import InProcess, colonnade_arrow, roapi_arrow, why
from bench.common import median, tpch_query
from bench.sections import Context, Target, log

NAME = "tpch"
ORDER = 10
TITLE = "TPC-H, 22 queries, one client, Arrow responses"
ROAPI_MODES = {"roapi_memory": True, "roapi_ondemand": False}


def run(ctx: Context) -> dict:
    queries = {n: tpch_query(n) for n in range(1, 23)}
    inproc = InProcess(ctx.data)
    out: dict = {"comparisons": {}, "ratios": {}, "failures": {}, "rows": {}, "queries_compared": {}}
    try:
        with (
            ctx.colonnade(log_file=ctx.out / "colonnade-tpch.log") as col,
            httpx.Client(base_url=col.url, timeout=600) as client,
        ):
            systems: dict[str, Callable[[str], int]] = {
                "inprocess": inproc.run,
                "colonnade": lambda sql: colonnade_arrow(client, sql),
            }
            for name, fn in systems.items():
                _warm(out, name, fn, queries)
            cmp = ctx.interleave({name: _passes(fn, queries, ctx.seconds) for name, fn in systems.items()})
            out["comparisons"]["colonnade_vs_inprocess"] = cmp
            out["ratios"]["colonnade_vs_inprocess"] = interleave.ratio(cmp, "colonnade", "inprocess")
            if ctx.roapi:
                tables = servers.roapi_tables(ctx.data, ctx.out / "roapi-tables")
                for mode, memory in ROAPI_MODES.items():
                    log(f"  {mode} ...")
                    with (
                        servers.roapi(tables, ctx.out, memory=memory) as srv,
                        httpx.Client(base_url=srv.url, timeout=ctx.args.roapi_timeout) as rc,
                    ):
                        fn = lambda sql, rc=rc: roapi_arrow(rc, sql)  # noqa: E731
                        _warm(out, mode, fn, queries)
                        ok = {n: q for n, q in queries.items() if str(n) not in out["failures"].get(mode, {})}
                        out["queries_compared"][mode] = len(ok)
                        contenders = {
                            "colonnade": _passes(systems["colonnade"], ok, ctx.seconds),
                            mode: _passes(fn, ok, ctx.seconds),
                        }
                        cmp = ctx.interleave(contenders, ctx.slow_pairs)
                    out["comparisons"][mode] = cmp
                    out["ratios"][f"{mode}_vs_colonnade"] = interleave.ratio(cmp, mode, "colonnade")
    finally:
        inproc.close()
    out["row_count_mismatch"] = [q for q, r in out["rows"].items() if len({v for v in r.values() if v is not None}) > 1]
    out["per_query_s"] = _per_query(out["comparisons"])
    return out


def _warm(out: dict, name: str, fn: Callable[[str], int], queries: dict[int, str]) -> None:
    """One untimed pass: file metadata, views, plans; row counts; which queries fail."""
    for n, sql in queries.items():
        try:
            out["rows"].setdefault(str(n), {})[name] = fn(interleave.with_nonce(sql, interleave.nonce()))
        except Exception as exc:
            out["failures"].setdefault(name, {})[str(n)] = why(exc)


def _passes(fn: Callable[[str], int], queries: dict[int, str], seconds: float) -> interleave.Phase:
    def phase(tag: str) -> dict:
        per_query = dict.fromkeys(queries, 0.0)
        failed: dict[str, str] = {}
        passes = iter(range(1_000_000))

        def one_pass() -> float:
            # A nonce per pass: every query the clock sees is text the server has not seen,
            # so validation is always paid and no cache can answer.
            sqls = {n: interleave.with_nonce(q, f"{tag}_{next(passes)}") for n, q in queries.items()}
            total = 0.0
            for n, sql in sqls.items():
                t = time.perf_counter()
                try:
                    fn(sql)
                except Exception as exc:  # a pass with a failure has no total; the others still count
                    failed[str(n)] = why(exc)
                dt = time.perf_counter() - t
                per_query[n] += dt
                total += dt
            return total

        passes, _, totals = interleave.repeat_for(seconds, one_pass)
        return {
            "value": None if failed else round(sum(totals) / passes, 4),  # type: ignore[arg-type]
            "passes": passes,
            "per_query_s": {str(n): round(v / passes, 4) for n, v in per_query.items()},
            "failed": failed,
        }

    return phase


def _per_query(comparisons: dict) -> dict[str, dict[str, float]]:
    """Each system's median seconds per query over its phases (ROAPI's from its own pairs)."""
    out: dict[str, dict[str, float]] = {}
    for key, cmp in comparisons.items():
        for name in cmp["contenders"]:
            if name == "colonnade" and key != "colonnade_vs_inprocess":
                continue
            phases = [p for p in cmp["phases"] if p["contender"] == name]
            for q in phases[0]["per_query_s"] if phases else []:
                out.setdefault(q, {})[name] = round(median([p["per_query_s"][q] for p in phases]), 4)
    return out


def targets(r: dict, meta: dict) -> list[Target]:
    cmps, ratios, out = r.get("comparisons", {}), r.get("ratios", {}), []
    if "colonnade_vs_inprocess" in ratios:
        out.append(
            Target(
                f"TPC-H SF{meta['scale']:g}, 22 queries: Colonnade time ÷ in-process DuckDB",
                NAME,
                ratios["colonnade_vs_inprocess"],
                "×",
                "≤ 1.10×",
                lambda v: v <= 1.10,
                interleave.machine(cmps["colonnade_vs_inprocess"]),
            )
        )
    for mode in ROAPI_MODES:
        if f"{mode}_vs_colonnade" in ratios:
            out.append(
                Target(
                    f"TPC-H: ROAPI {mode.split('_')[1]} time ÷ Colonnade ({r['queries_compared'][mode]} queries)",
                    NAME,
                    ratios[f"{mode}_vs_colonnade"],
                    "×",
                    "≥ 5×",
                    lambda v: v >= 5,
                    interleave.machine(cmps[mode]),
                )
            )
    return out


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    systems = [
        s for s in ("colonnade", "inprocess", *ROAPI_MODES) if any(s in row for row in r["per_query_s"].values())
    ]
    cmp = r["comparisons"]["colonnade_vs_inprocess"]
    L = [
        "In-process = DuckDB in the benchmark process on the same Parquet files with Colonnade's per-worker "
        "settings and view definitions; Colonnade = `POST /api/sql` with `Accept: application/vnd.apache.arrow.stream` "
        "(result cache off); ROAPI = the same request. A phase is whole passes over the 22 queries (at least one, "
        f"as many as fill {meta['seconds']:g} s), each pass under its own nonce, so every query timed is new text "
        "(Colonnade validates it: a memoised text would skip that); its figure is seconds per pass. "
        "Per query: the median over the phases.",
        "",
        "| query | " + " | ".join(systems) + " | Colonnade ÷ in-process |",
        "|---|" + "---|" * (len(systems) + 1),
    ]
    for q, row in r["per_query_s"].items():
        ratio = row["colonnade"] / row["inprocess"] if row.get("colonnade") and row.get("inprocess") else None
        L.append(
            f"| Q{q} | " + " | ".join(markdown.num(row.get(s), 3) for s in systems) + f" | {markdown.num(ratio)}× |"
        )
    L.append("")
    for key, label in (
        ("colonnade_vs_inprocess", "Colonnade ÷ in-process"),
        ("roapi_memory_vs_colonnade", "ROAPI memory ÷ Colonnade"),
        ("roapi_ondemand_vs_colonnade", "ROAPI on-demand ÷ Colonnade"),
    ):
        if key in r["ratios"]:
            src = r["comparisons"][key.removesuffix("_vs_colonnade")] if "roapi" in key else cmp
            L.append(
                f"- {label}: **{markdown.fig(r['ratios'][key])}** over {len(r['ratios'][key]['values'])} pairs; "
                f"load {markdown.machine(interleave.machine(src))}"
            )
    L.append("")
    for key, c in r["comparisons"].items():
        L += markdown.details(
            f"rounds: {key} (seconds per pass)",
            markdown.rounds_table(c, lambda p: markdown.num(p["value"], 3)),
        )
    if r.get("failures"):
        L += ["Queries a system could not run (left out of that system's pairs on both sides):", ""]
        L += [f"- {s} Q{q}: {w}" for s, fails in r["failures"].items() for q, w in fails.items()]
        L.append("")
    if r.get("row_count_mismatch"):
        L += [f"Row counts differ between systems for: {', '.join('Q' + q for q in r['row_count_mismatch'])}", ""]
    if "tpch.png" in images:
        L += [f"![TPC-H per query]({images['tpch.png']})", ""]
    return L


def plot(r: dict, meta: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    systems = [
        s for s in ("colonnade", "inprocess", *ROAPI_MODES) if any(s in row for row in r["per_query_s"].values())
    ]
    qs = list(r["per_query_s"])
    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        ax.bar([j + i * width for j in range(len(qs))], [r["per_query_s"][q].get(s) or 0 for q in qs], width, label=s)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(qs))], [f"Q{q}" for q in qs])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (median of phases, log)")
    ax.set_title(f"TPC-H SF{meta['scale']:g}, one client, Arrow responses")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "tpch.png", dpi=110)
    plt.close(fig)
    return ["tpch.png"]
