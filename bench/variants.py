"""Server variants A/B/C…: the same 8-client load against several ``colonnade serve`` set-ups
started side by side, one phase each per round in alternating order (``bench/interleave.py``),
with the server tree's CPU per query beside the throughput. For the question "which setting
costs what", not a target of ``make bench`` (bench/NOTES.md §23).

    python -m bench.variants --variant 1w:1 --variant 2w:2 \\
        --variant 2w-2slots:2:COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES=2 --rounds 3 --seconds 8

A variant is ``NAME:WORKERS[:KEY=VALUE,...]`` (settings as environment variables).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import interleave, procstat, servers
from bench.clients import HttpClients, colonnade_arrow, load
from bench.common import tpch_query


def parse_variant(text: str) -> tuple[str, int, dict[str, str]]:
    name, workers, *rest = text.split(":", 2)
    env = dict(item.split("=", 1) for item in rest[0].split(",")) if rest and rest[0] else {}
    return name, int(workers), env


def phase(srv: servers.Server, sqls: list[str], clients: int, seconds: float) -> interleave.Phase:
    def run(tag: str) -> dict:
        texts = [interleave.with_nonce(s, tag) for s in sqls]
        root = srv.pid
        before = procstat.tree_ticks(root)
        with HttpClients(srv.url) as pool:
            r = load(lambda c, i: colonnade_arrow(pool.get(), texts[(c + i) % len(texts)]), clients, seconds)
        cpu_s = (procstat.tree_ticks(root) - before) / procstat.TICKS
        return r | {"value": r["qps"], "cpu_ms_per_query": round(1000 * cpu_s / max(1, r["queries"]), 1)}

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", required=True, type=parse_variant)
    p.add_argument("--data", type=Path, default=Path("bench/data/sf1"))
    p.add_argument("--queries", default="1", help="TPC-H query numbers the clients cycle through, e.g. 1,3,6,12")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8)
    args = p.parse_args()
    sqls = [tpch_query(int(n)) for n in args.queries.split(",")]
    launches = [servers.colonnade(args.data, workers=w, env=env) for _, w, env in args.variant]
    with servers.together(*launches) as started:
        for srv in started:  # every worker has planned the queries once
            with HttpClients(srv.url) as pool:
                for sql in sqls * 4:
                    colonnade_arrow(pool.get(), interleave.with_nonce(sql, interleave.nonce()))
        contenders = {
            name: phase(srv, sqls, args.clients, args.seconds)
            for (name, _, _), srv in zip(args.variant, started, strict=True)
        }
        cmp = interleave.interleave(contenders, args.rounds, log=print)
    for name in contenders:
        qps = interleave.spread(interleave.values(cmp, name))
        cpu = interleave.spread(interleave.values(cmp, name, "cpu_ms_per_query"), 1)
        print(
            f"{name}: {qps['median']} q/s ({qps['min']}–{qps['max']}), "
            f"server CPU {cpu['median']} ms/query ({cpu['min']}–{cpu['max']})"
        )


if __name__ == "__main__":
    main()
