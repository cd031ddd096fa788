"""A/B one change quickly (used for bench/NOTES.md): 8 clients on Q1 or the mix against a
1-worker server, interleaved with the same load in-process, /health probed throughout.

    python -m bench.experiment --what q1 --duration 8 --rounds 2 [--env KEY=VALUE ...] [--workers 2]
    python -m bench.experiment --what export --format arrow
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from urllib.parse import quote

import httpx

from bench import procstat
from bench.common import COLONNADE, free_port, median, tpch_data, tpch_query
from bench.harness import MIX, InProcess, colonnade_arrow, curl, health_probe, load, server


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--what", default="q1", choices=["q1", "mix", "export"])
    p.add_argument("--scale", type=float, default=1)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--format", default="arrow")
    p.add_argument("--sql", default="SELECT * FROM orders WHERE o_orderkey <= 4000000")
    p.add_argument("--env", nargs="*", default=[])
    p.add_argument("--no-inprocess", action="store_true")
    args = p.parse_args()
    data = tpch_data(args.scale)
    env = {"COLONNADE_CACHE_MAX_BYTES": "0", "COLONNADE_LIMITS_MAX_RESULT_ROWS": "100000000"}
    env |= dict(kv.split("=", 1) for kv in args.env)
    port = free_port()
    cmd = [COLONNADE, "serve", "--data", str(data), "--port", str(port), "--workers", str(args.workers)]
    out: dict = {"env": args.env, "what": args.what, "rounds": []}
    with server(cmd, port, env=env, workers=args.workers, log_file=Path("/tmp/experiment-server.log")) as srv:
        if args.what == "export":
            url = f"{srv.url}/api/sql?q={quote(args.sql)}&format={args.format}"
            curl(url)
            runs = []
            for _ in range(args.rounds):
                pids = srv.pids()
                procstat.reset_peak(pids)
                r = curl(url)
                r["peak_rss_mb"] = procstat.peak_rss(pids) / 1e6
                runs.append(r)
            s = median([r["seconds"] for r in runs])
            out.update(seconds=s, mb_per_s=runs[0]["bytes"] / 1e6 / s, bytes=runs[0]["bytes"], runs=runs)
            print(json.dumps(out, indent=1))
            return
        sqls = [tpch_query(1)] if args.what == "q1" else [tpch_query(n) for n in MIX]
        local = threading.local()

        def call(c: int, i: int) -> None:
            if not hasattr(local, "c"):
                local.c = httpx.Client(base_url=srv.url, timeout=600)
            colonnade_arrow(local.c, sqls[(c + i) % len(sqls)])

        for i in range(len(sqls) * args.workers * 2):
            call(0, i)
        inproc = None if args.no_inprocess else InProcess(data)
        for _ in range(args.rounds):
            row: dict = {}
            with procstat.ProcessSampler(srv.pid) as cpu, health_probe(srv.url, args.duration) as health:
                row["http"] = load(call, args.clients, args.duration)
            row["http"]["cores"] = cpu.summary()["mean_cores"]
            row["health"] = health
            if inproc is not None:
                row["inprocess"] = load(lambda c, i: inproc.run(sqls[(c + i) % len(sqls)]), args.clients, args.duration)
                row["ratio"] = round(row["http"]["qps"] / row["inprocess"]["qps"], 3)
            out["rounds"].append(row)
            print(
                json.dumps(
                    {
                        k: (
                            v
                            if not isinstance(v, dict)
                            else {a: b for a, b in v.items() if a in ("qps", "p99_ms", "p50_ms", "cores")}
                        )
                        for k, v in row.items()
                    }
                ),
                flush=True,
            )
    print(
        json.dumps(
            {
                "health_p99": [r["health"]["p99_ms"] for r in out["rounds"]],
                "ratio": [r.get("ratio") for r in out["rounds"]],
            }
        )
    )


if __name__ == "__main__":
    main()
