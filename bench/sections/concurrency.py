"""8 clients looping TPC-H Q1, or cycling through a mix, over HTTP against 1 and 2 workers, each
paired with the same 8-way load on in-process DuckDB threads; ``/health`` is probed throughout
from a separate process, so its latency is known for every phase of both sides."""

from __future__ import annotations

from pathlib import Path

from bench import interleave, markdown, procstat, servers
from bench.clients import HealthProbe, HttpClients, InProcess, colonnade_arrow, load
from bench.common import tpch_query
from bench.sections import Context, Target

NAME = "concurrency"
ORDER = 20
TITLE = "Concurrency: N clients over HTTP vs N in-process threads"
MIX = (1, 3, 6, 12)  # the mixed set: the naive service (section gil) implements exactly these
WORKERS = (1, 2)
LOADS = ("q1", "mix")


def run(ctx: Context) -> dict:
    clients, seconds = ctx.args.clients, ctx.seconds
    loads = {"q1": [tpch_query(1)], "mix": [tpch_query(n) for n in MIX]}
    out: dict = {"clients": clients, "mix": list(MIX), "comparisons": {}, "ratios": {}, "health": {}}
    inproc = InProcess(ctx.data)
    try:
        for sql in loads["mix"]:
            inproc.run(sql)
        launches = [ctx.colonnade(workers=w, log_file=ctx.out / f"colonnade-{w}w.log") for w in WORKERS]
        with servers.together(*launches) as started:  # the idle one costs both sides of a pair alike
            for workers, srv in zip(WORKERS, started, strict=True):
                with HealthProbe(srv.url) as probe:
                    with HttpClients(srv.url) as pool:  # every worker plans the mix once
                        for sql in loads["mix"] * workers * 2:
                            colonnade_arrow(pool.get(), interleave.with_nonce(sql, interleave.nonce()))
                    for name, sqls in loads.items():
                        key = f"{workers}w_{name}"
                        contenders = {
                            "inprocess": _inprocess(inproc, sqls, clients, seconds),
                            "colonnade": _http(srv, sqls, clients, seconds),
                        }
                        cmp = ctx.interleave(contenders)
                        for p in cmp["phases"]:
                            p["health"] = probe.window(p["started"], p["ended"])
                        out["comparisons"][key] = cmp
                        out["ratios"][key] = interleave.ratio(cmp, "colonnade", "inprocess")
                        out["health"][key] = _health(cmp, "colonnade")
                        out["health"][key + "_idle_server"] = _health(cmp, "inprocess")
    finally:
        inproc.close()
    return out


def _texts(sqls: list[str], tag: str) -> list[str]:
    return [interleave.with_nonce(s, tag) for s in sqls]


def _inprocess(inproc: InProcess, sqls: list[str], clients: int, seconds: float) -> interleave.Phase:
    def phase(tag: str) -> dict:
        texts = _texts(sqls, tag)
        r = load(lambda c, i: inproc.run(texts[(c + i) % len(texts)]), clients, seconds)
        return r | {"value": r["qps"]}

    return phase


def _http(srv, sqls: list[str], clients: int, seconds: float) -> interleave.Phase:
    def phase(tag: str) -> dict:
        texts = _texts(sqls, tag)
        with HttpClients(srv.url) as pool, procstat.ProcessSampler(srv.pid) as cpu:
            r = load(lambda c, i: colonnade_arrow(pool.get(), texts[(c + i) % len(texts)]), clients, seconds)
        return r | {"value": r["qps"], "server_cores": cpu.summary()["mean_cores"]}

    return phase


def _health(cmp: dict, contender: str) -> dict:
    phases = [p for p in cmp["phases"] if p["contender"] == contender]
    return interleave.spread([p["health"]["p99_ms"] for p in phases if p["health"]["p99_ms"] is not None], 2) | {
        "p50_median_ms": interleave.spread([p["health"]["p50_ms"] for p in phases if p["health"]["p50_ms"]], 2)[
            "median"
        ],
        "samples": sum(p["health"]["samples"] for p in phases),
        "failed": sum(p["health"]["failed"] for p in phases),
    }


def _workers(key: str) -> str:
    w = int(key[0])
    return f"{w} worker{'s' if w > 1 else ''}"


def targets(r: dict, meta: dict) -> list[Target]:
    out = []
    n = r.get("clients", 8)
    for key, cmp in r.get("comparisons", {}).items():
        load_name = "Q1" if key.endswith("q1") else "mix"
        out.append(
            Target(
                f"{n} clients {load_name}: Colonnade ({_workers(key)}) ÷ {n} in-process threads, queries/s",
                NAME,
                r["ratios"][key],
                "×",
                "≥ 0.95×",
                lambda v: v >= 0.95,
                interleave.machine(cmp),
            )
        )
    for key, cmp in r.get("comparisons", {}).items():
        http = [p for p in cmp["phases"] if p["contender"] == "colonnade"]
        out.append(
            Target(
                f"/health p99 under the {n}-client {key.split('_')[1]} load ({_workers(key)}; control, the same "
                f"probe while in-process ran: {markdown.num(r['health'][key + '_idle_server']['median'], 1)} ms)",
                NAME,
                r["health"][key],
                " ms",
                "≤ 25 ms",
                lambda v: v <= 25,
                interleave.machine(cmp, http),
            )
        )
    return out


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    L = [
        f"{r['clients']} clients loop TPC-H Q1, or cycle through the mix {r['mix']}, with Arrow responses (result "
        f"cache off), for {meta['seconds']:g} s a phase; in-process: {r['clients']} threads, each with its own DuckDB "
        "cursor. Every phase opens new connections and has its own nonce. `/health` is probed at 20 Hz from a "
        "separate process through both phases of every pair (a new connection each second): its p99 per HTTP "
        "phase is the figure; the same probe while the in-process side ran (the server idle, the machine busy) is "
        "the control. Figures: median of the phases (min–max).",
        "",
        "| workers, load | in-process q/s | Colonnade q/s | ratio | Colonnade p50 / p99 ms | /health p50 ms | "
        "/health p99 ms | /health p99, server idle | server cores | errors | load before → during · others |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, cmp in r["comparisons"].items():
        http = [p for p in cmp["phases"] if p["contender"] == "colonnade"]
        lat = interleave.spread([p["p50_ms"] for p in http if p["p50_ms"]], 1)["median"]
        p99 = interleave.spread([p["p99_ms"] for p in http if p["p99_ms"]], 1)["median"]
        cores = interleave.spread([p["server_cores"] for p in http], 2)["median"]
        errors = sum(p["errors"] for p in cmp["phases"])
        L.append(
            f"| {_workers(key)}, {key.split('_')[1]} | {markdown.fig(interleave.spread(interleave.values(cmp, 'inprocess')), '')} | "
            f"{markdown.fig(interleave.spread(interleave.values(cmp, 'colonnade')), '')} | "
            f"**{markdown.fig(r['ratios'][key])}** | {lat} / {p99} | {r['health'][key]['p50_median_ms']} | "
            f"**{markdown.fig(r['health'][key], '')}** | {markdown.fig(r['health'][key + '_idle_server'], '')} | "
            f"{cores} | {errors} | {markdown.machine(interleave.machine(cmp))} |"
        )
    L.append("")
    for key, cmp in r["comparisons"].items():
        L += markdown.details(
            f"rounds: {key} (queries/s; /health p99 ms in brackets)",
            markdown.rounds_table(
                cmp,
                lambda p: f"{p['value']:.2f} ({p['health']['p99_ms']})",
                lambda ps: (
                    f"{ps['colonnade']['value'] / ps['inprocess']['value']:.3f}"
                    if {"colonnade", "inprocess"} <= set(ps)
                    else "—"
                ),
            ),
        )
    if "concurrency.png" in images:
        L += [f"![concurrency]({images['concurrency.png']})", ""]
    return L


def plot(r: dict, meta: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    keys = list(r["comparisons"])
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, name in enumerate(("inprocess", "colonnade")):
        figs = [interleave.spread(interleave.values(r["comparisons"][k], name)) for k in keys]
        med = [f["median"] or 0 for f in figs]
        err = [
            [m - (f["min"] or 0) for m, f in zip(med, figs, strict=True)],
            [(f["max"] or 0) - m for m, f in zip(med, figs, strict=True)],
        ]
        ax.bar([j + i * 0.4 for j in range(len(keys))], med, 0.4, yerr=err, capsize=3, label=name)
    ax.set_xticks([j + 0.2 for j in range(len(keys))], keys)
    ax.set_ylabel("queries / s (median of phases, min–max)")
    ax.set_title(f"{r['clients']} clients, interleaved phases of {meta['seconds']:g} s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "concurrency.png", dpi=110)
    plt.close(fig)
    return ["concurrency.png"]
