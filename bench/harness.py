"""`make bench`: Colonnade against its ceilings and peers, every comparison measured as
interleaved pairs (bench/interleave.py: A B, B A, ... with the median ratio and the min–max of
the pairs, the load beside it), written to one results.json as each section finishes.

    python -m bench.harness --scale 1 --out bench/results              # what `make bench` runs
    python -m bench.harness --only concurrency --pairs 3 --seconds 3    # one section, quickly
    python -m bench.harness --scale 0.01 --pairs 2 --seconds 0.3        # the smoke test's size

The sections (bench/sections/, one module each; ``--only`` takes their names) are listed below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
import traceback
from pathlib import Path

import pyarrow as pa

from bench import servers
from bench.common import BENCH_DIR
from bench.interleave import Machine
from bench.sections import Context, all_sections, log


def parser() -> argparse.ArgumentParser:
    sections = all_sections()
    epilog = "sections:\n" + "\n".join(f"  {m.NAME:<12} {(m.__doc__ or '').strip().splitlines()[0]}" for m in sections)
    p = argparse.ArgumentParser(
        description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor")
    p.add_argument("--data", help="a TPC-H data dir (default: bench/data/sf<scale>, generated if missing)")
    p.add_argument("--out", default=str(BENCH_DIR / "results"))
    p.add_argument("--pairs", type=int, default=5, help="interleaved rounds per comparison (each round: A B or B A)")
    p.add_argument(
        "--slow-pairs", type=int, default=3, help="rounds where a phase takes 10+ s (ROAPI's TPC-H pass, NDJSON ingest)"
    )
    p.add_argument("--seconds", type=float, default=4.0, help="length of a phase (one side of a pair)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (and in-process threads)")
    p.add_argument("--roapi-timeout", type=float, default=60.0)
    p.add_argument("--only", nargs="*", choices=[m.NAME for m in sections], help="run only these sections")
    p.add_argument(
        "--server-env", nargs="*", default=[], metavar="KEY=VALUE", help="settings for every Colonnade server (A/B)"
    )
    p.add_argument("--no-roapi", action="store_true")
    p.add_argument("--no-wrk", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--strict", action="store_true", help="stop at the first failing section")
    for m in sections:
        if hasattr(m, "add_arguments"):
            m.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.data is None:
        from bench.common import tpch_data

        log(f"TPC-H scale {args.scale:g} data ...")
        args.data = str(tpch_data(args.scale))
    from bench.sections import profile

    ctx = Context(
        args=args,
        data=Path(args.data),
        out=Path(args.out),
        roapi=servers.roapi_available() and not args.no_roapi,
        wrk=shutil.which("wrk") is not None and not args.no_wrk,
        py_spy=profile.available() and not args.no_profile,
        server_env=dict(kv.split("=", 1) for kv in args.server_env),
    )
    ctx.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"meta": meta(ctx)}
    path = ctx.out / "results.json"
    first = Machine.read()
    for mod in all_sections():
        if args.only and mod.NAME not in args.only:
            continue
        log(f"{mod.NAME} ...")
        started, load_before = time.monotonic(), os.getloadavg()
        try:
            result = mod.run(ctx)
        except Exception as exc:  # record it and go on: the other comparisons still count
            traceback.print_exc()
            result = {"error": repr(exc)}
            if args.strict:
                raise
        result |= {"section_seconds": round(time.monotonic() - started, 1), "load_before": list(load_before)}
        results[mod.NAME] = result
        path.write_text(json.dumps(results, indent=1))
        log(f"{mod.NAME} done in {result['section_seconds']} s")
    results["meta"] |= {
        "total_seconds": round(time.monotonic() - first.t, 1),
        "load_after": list(os.getloadavg()),
        **{f"run_{k}": v for k, v in Machine.read().since(first).items()},
    }
    path.write_text(json.dumps(results, indent=1))
    log(f"all done in {results['meta']['total_seconds']} s -> {path}")
    return results


def meta(ctx: Context) -> dict:
    import duckdb

    args = ctx.args
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    git = ["git", "-C", str(BENCH_DIR.parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(
        subprocess.run([*git, "status", "--porcelain", "--", "engine", "api"], capture_output=True, text=True).stdout
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "commit": commit + ("+dirty" if dirty else ""),
        "scale": args.scale,
        "pairs": args.pairs,
        "slow_pairs": min(args.pairs, args.slow_pairs),
        "seconds": args.seconds,
        "only": args.only,
        "server_env": ctx.server_env,
        "load_before": list(os.getloadavg()),
        "roapi": servers.roapi_version() if ctx.roapi else None,
        "skipped": [name for name, ok in (("roapi", ctx.roapi), ("wrk", ctx.wrk), ("py-spy", ctx.py_spy)) if not ok],
    }


if __name__ == "__main__":
    main()
