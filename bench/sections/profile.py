"""Where the server's time goes under the 8-client mix: py-spy (a flame graph, then a --native
recording whose samples are classified by what each Python thread was doing) and, when
``perf`` is installed, the native symbols and libraries of every thread, DuckDB's included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.clients import HttpClients, colonnade_arrow, load
from bench.common import tpch_query
from bench.sections import Context
from bench.sections.concurrency import MIX

NAME = "profile"
ORDER = 60
TITLE = "Profile under load"
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
PERF = shutil.which("perf")
IDLE_LEAVES = (
    "select (selectors.py",
    "_worker (concurrent/futures/thread.py:81",
    "wait (threading.py",
    "dequeue (logging/handlers.py",
    "Queue.get (queue.py",
)
ENGINE_LIBS = ("_duckdb", "libarrow", "libparquet", "pyarrow/lib", "pyarrow/_", "polars", "duckdb::")


def add_arguments(p) -> None:
    p.add_argument("--profile-seconds", type=int, default=8)


def available() -> bool:
    return Path(PY_SPY).exists()


def run(ctx: Context) -> dict:
    if not ctx.py_spy:
        return {"skipped": "py-spy is not installed"}
    seconds = ctx.args.profile_seconds
    mix = [tpch_query(n) for n in MIX]
    out: dict = {"seconds": seconds, "load": f"{ctx.args.clients} clients looping the mix {list(MIX)}, Arrow"}
    plots = ctx.out / "plots"
    plots.mkdir(exist_ok=True)
    svg, raw = plots / "flamegraph.svg", ctx.out / "profile-native.txt"
    with ctx.colonnade() as srv, HttpClients(srv.url) as pool:
        for sql in mix:
            colonnade_arrow(pool.get(), sql)
        runs: dict = {}
        stop = threading.Event()  # the load lasts as long as the recordings (py-spy --native is slow to stop)
        call = lambda c, i: colonnade_arrow(pool.get(), mix[(c + i) % len(mix)])  # noqa: E731
        loader = threading.Thread(target=lambda: runs.update(load=load(call, ctx.args.clients, 3600, stop)))
        loader.start()
        time.sleep(1)
        common = ["record", "-p", str(srv.pid), "--subprocesses", "-r", "100", "-d", str(seconds)]
        out["svg"] = _py_spy([*common, "--nonblocking", "-f", "flamegraph", "-o", str(svg)])
        native = _py_spy([*common, "--native", "-f", "raw", "-o", str(raw)])
        if not native["ok"]:  # no native unwinding here: classify by the Python leaf instead
            native = _py_spy([*common, "--nonblocking", "-f", "raw", "-o", str(raw)])
        out["raw"] = native
        if PERF:
            out["perf"] = _perf(srv.pids(), seconds, ctx.out / "perf.data")
        stop.set()
        loader.join()
        out["load_during_profile"] = runs.get("load")
    if raw.exists():
        out["shares"] = classify(raw.read_text())
    out["svg_path"] = str(svg) if svg.exists() else None
    return out


def _py_spy(args: list[str]) -> dict:
    proc = subprocess.run([PY_SPY, *args], capture_output=True, text=True)
    return {"ok": proc.returncode == 0, "native": "--native" in args, "stderr": proc.stderr[-400:]}


def _perf(pids: list[int], seconds: int, data: Path) -> dict:
    """``perf record`` of the server's processes (every thread), then the top symbols and
    libraries by self time."""
    rec = subprocess.run(
        [
            PERF,
            "record",
            "-F",
            "199",
            "-g",
            "-o",
            str(data),
            "-p",
            ",".join(map(str, pids)),
            "--",
            "sleep",
            str(seconds),
        ],
        capture_output=True,
        text=True,
    )
    if rec.returncode != 0:
        return {"ok": False, "stderr": rec.stderr[-400:]}
    out: dict = {"ok": True}
    for key, sort in (("symbols", "dso,sym"), ("libraries", "dso")):
        rep = subprocess.run(
            [
                PERF,
                "report",
                "-i",
                str(data),
                "--no-children",
                "--sort",
                sort,
                "--stdio",
                "--percent-limit",
                "1",
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
        )
        rows = [line.strip() for line in rep.stdout.splitlines() if line.strip() and not line.startswith("#")]
        out[key] = rows[:20]
    data.unlink(missing_ok=True)
    return out


def classify(raw: str) -> dict:
    """Shares of py-spy (--native) samples of the server's Python threads, by what the thread
    was doing: inside native engine code (DuckDB, Arrow, Parquet — including DuckDB's calling
    thread waiting for its own worker threads), running Python (Litestar, uvicorn, Colonnade,
    the interpreter), waiting for the GIL or a lock, or other native code (socket I/O, libc).
    Threads parked waiting for work (idle pool threads, the selector) are counted apart."""
    counts = {"native_engine": 0, "python": 0, "gil_or_lock_wait": 0, "native_other": 0}
    where: dict[str, int] = {}
    idle = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")[1:]  # [0] names the process
        py = [i for i, f in enumerate(frames) if ".py:" in f]
        if not py:
            counts["native_other"] += count
            continue
        last = frames[py[-1]]
        callees = frames[py[-1] + 1 :]
        if any(k in last for k in IDLE_LEAVES):
            idle += count
            continue
        if any(lib in f for f in callees for lib in ENGINE_LIBS):
            kind = "native_engine"
        elif not callees or all("libpython" in f or ".c:" in f or ".c.h:" in f for f in callees):
            kind = "python"
        elif all("libc.so" in f or "pthread" in f for f in callees) and any("pthread_cond" in f for f in callees):
            kind = "gil_or_lock_wait"
        else:
            kind = "native_other"
        counts[kind] += count
        key = f"{kind}: {last}"
        where[key] = where.get(key, 0) + count
    busy = sum(counts.values()) or 1
    return {
        "busy_samples": sum(counts.values()),
        "idle_samples": idle,
        "share": {k: round(v / busy, 3) for k, v in counts.items()},
        "top": sorted(where.items(), key=lambda kv: -kv[1])[:15],
    }


LABELS = {
    "native_engine": "native engine code (DuckDB, Arrow, Parquet; incl. DuckDB's caller waiting on its workers)",
    "python": "Python frames (Litestar, uvicorn, asyncio, Colonnade, interpreter)",
    "gil_or_lock_wait": "waiting for the GIL or a lock",
    "native_other": "other native code (socket I/O, libc, file system)",
}


def render(r: dict, meta: dict, images: dict[str, str]) -> list[str]:
    if "skipped" in r:
        return [f"Skipped: {r['skipped']}", ""]
    if not r.get("shares"):
        return [f"py-spy recorded nothing: {r.get('raw', {}).get('stderr', '')}", ""]
    sh = r["shares"]
    svg = images.get("flamegraph.svg", "bench/plots/flamegraph.svg")
    L = [
        f"py-spy, {r['seconds']} s at 100 Hz on the 1-worker server while {r['load']} ran ([flame graph, SVG]({svg})). "
        "Shares come from a second `--native` recording of the same load: each sample of a busy Python thread is "
        "classified by its innermost frames. Not a comparison: no pairs.",
        "",
        "| where the server's Python threads were | share of busy samples |",
        "|---|---|",
    ]
    L += [f"| {LABELS.get(k, k)} | {v * 100:.1f}% |" for k, v in sh["share"].items()]
    L += [
        "",
        f"{sh['busy_samples']} busy samples, {sh['idle_samples']} idle (threads parked waiting for work). "
        "DuckDB's own worker threads are not Python threads and are not sampled by py-spy. Top frames:",
        "",
    ]
    L += [f"- {n} × `{frame}`" for frame, n in sh.get("top", [])[:10]]
    perf = r.get("perf")
    if perf and perf.get("ok"):
        L += [
            "",
            "`perf record -g` of every server thread (DuckDB's included), self time, top libraries and symbols:",
            "",
        ]
        L += ["```", *perf["libraries"][:8], "", *perf["symbols"][:15], "```"]
    L.append("")
    return L
