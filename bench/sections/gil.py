"""The GIL story: the naive pandas service (bench/naive_service.py) vs Colonnade under the same
8-client mix with JSON responses, paired phase by phase, with the cores each server kept busy."""

from __future__ import annotations

from pathlib import Path

from bench import interleave, markdown, procstat, servers
from bench.clients import HttpClients, colonnade_json, load
from bench.common import tpch_query
from bench.sections import Context, Target
from bench.sections.concurrency import MIX

NAME = "gil"
ORDER = 30
TITLE = "The GIL story: a naive pandas service vs Colonnade"


def run(ctx: Context) -> dict:
    clients, seconds = ctx.args.clients, ctx.seconds
    mix = [tpch_query(n) for n in MIX]
    out: dict = {"clients": clients, "mix": list(MIX), "format": "json"}
    with servers.together(servers.naive(ctx.data), ctx.colonnade()) as (naive, col):
        with HttpClients(naive.url) as pool:
            for n in MIX:
                pool.get().get(f"/q/{n}").raise_for_status()
        with HttpClients(col.url) as pool:
            for sql in mix:
                colonnade_json(pool.get(), interleave.with_nonce(sql, interleave.nonce()))

        def _measured(srv: servers.Server, call) -> dict:
            with procstat.ProcessSampler(srv.pid) as cpu:
                r = load(call, clients, seconds)
            return r | {"value": r["qps"], "cpu": cpu.summary()}

        def naive_phase(tag: str) -> dict:  # fixed endpoints: no SQL text to vary
            with HttpClients(naive.url) as pool:
                return _measured(naive, lambda c, i: pool.get().get(f"/q/{MIX[(c + i) % len(MIX)]}").raise_for_status())

        def colonnade_phase(tag: str) -> dict:
            texts = [interleave.with_nonce(s, tag) for s in mix]
            with HttpClients(col.url) as pool:
                return _measured(col, lambda c, i: colonnade_json(pool.get(), texts[(c + i) % len(texts)]))

        cmp = ctx.interleave({"naive": naive_phase, "colonnade": colonnade_phase})
    out["comparison"] = cmp
    out["ratio_colonnade_vs_naive"] = interleave.ratio(cmp, "colonnade", "naive")
    return out


def targets(r: dict, meta: dict) -> list[Target]:
    if "ratio_colonnade_vs_naive" not in r:
        return []
    return [
        Target(
            f"{r['clients']}-client mix, JSON: Colonnade ÷ naive pandas service, queries/s",
            NAME,
            r["ratio_colonnade_vs_naive"],
            "×",
            "(report)",
            None,
            interleave.machine(r["comparison"]),
        )
    ]


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    cmp = r["comparison"]
    L = [
        f"Same {r['clients']} clients, same mix {r['mix']}, JSON responses, {meta['seconds']:g} s a phase. The naive "
        "service loads the Parquet files into pandas at start-up and computes each query with pandas inside a "
        "Litestar handler (one uvicorn process, handlers in its thread pool). Medians of the phases (min–max).",
        "",
        "| server | queries/s | p50 ms | p99 ms | mean cores busy | max cores (0.25 s samples) | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("naive", "colonnade"):
        ps = [p for p in cmp["phases"] if p["contender"] == name]
        med = lambda key, ps=ps: interleave.spread([p[key] for p in ps if p[key] is not None])["median"]  # noqa: E731
        cores = interleave.spread([p["cpu"]["mean_cores"] for p in ps], 2)["median"]
        L.append(
            f"| {name} | {markdown.fig(interleave.spread(interleave.values(cmp, name)), '')} | {med('p50_ms')} | "
            f"{med('p99_ms')} | {cores} | {max(p['cpu']['max_cores'] for p in ps):.2f} | "
            f"{max(p['cpu']['peak_rss_mb'] for p in ps)} |"
        )
    L += [
        "",
        f"Colonnade ÷ naive: **{markdown.fig(r['ratio_colonnade_vs_naive'])}** queries/s; load "
        f"{markdown.machine(interleave.machine(cmp))}.",
        "",
    ]
    if "gil_cpu.png" in images:
        L += [f"![CPU]({images['gil_cpu.png']})", ""]
    return L


def plot(r: dict, meta: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    last = {p["contender"]: p for p in r["comparison"]["phases"]}  # each server's last phase
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, p in last.items():
        tl = p["cpu"]["timeline"]
        ax.plot([x[0] for x in tl], [x[1] for x in tl], label=f"{name} ({p['value']:.1f} q/s)")
    ax.axhline(1, ls=":", c="grey")
    ax.axhline(meta["cores"], ls="--", c="grey")
    ax.set_ylim(0, meta["cores"] + 0.3)
    ax.set_xlabel("seconds into the phase")
    ax.set_ylabel("cores busy (server + workers)")
    ax.set_title("Same 8-client mix: naive pandas service vs Colonnade (last pair)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gil_cpu.png", dpi=110)
    plt.close(fig)
    return ["gil_cpu.png"]
