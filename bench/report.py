"""results.json → BENCHMARKS.md, PNG plots under bench/plots/ and README's "## Benchmarks" table.

    python -m bench.report bench/results/results.json [--benchmarks BENCHMARKS.md] [--plots bench/plots]
        [--readme README.md] [--notes bench/MISSED.md]

Each section (bench/sections/) gives its own headline rows, text and plots; this module puts
them together with the run's machine, method and the headline table.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench import markdown
from bench.sections import Target, all_sections

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "make bench"


def targets(r: dict) -> list[Target]:
    """Every section's headline rows, in section order."""
    out: list[Target] = []
    for mod in all_sections():
        result = r.get(mod.NAME)
        if result and "error" not in result and "skipped" not in result and hasattr(mod, "targets"):
            out += mod.targets(result, r["meta"])
    return out


def _verdict(t: Target) -> str:
    if t.met is None:
        return "n/a"
    return "**met**" if t.met else "**MISSED**"


def _meeting(t: Target) -> str:
    counts = t.rounds_meeting
    if counts is None or counts[1] <= 1:
        return "—"
    return f"{counts[0]}/{counts[1]}"


NOISY_CORES = 0.25  # others' median cores above which a figure is marked: the neighbours took a real share


def _noisy(t: Target) -> bool:
    return bool(t.machine) and (t.machine.get("others_median") or 0) >= NOISY_CORES


def headline(r: dict) -> str:
    rows = targets(r)
    held = [t for t in rows if t.met is not None]
    noisy = sum(1 for t in rows if _noisy(t))
    lines = [
        f"**{sum(1 for t in held if t.met)} of {len(held)} targets met** (judged on the median of the pairs)."
        + (
            f" † {noisy} figure(s) were measured while processes outside the benchmark kept ≥ {NOISY_CORES} of the "
            f"{r['meta']['cores']} cores busy (median over the phases): re-run them before concluding."
            if noisy
            else ""
        ),
        "",
        "| comparison | median (min–max of pairs) | pairs meeting it | target | load before → during · others' cores | |",
        "|---|---|---|---|---|---|",
    ]
    for t in rows:
        digits = 2 if t.unit in ("×", " s") else (1 if t.unit == " ms" else 0)
        lines.append(
            f"| {t.name} | {markdown.fig(t.figure, t.unit, digits)} | {_meeting(t)} | {t.target} | "
            f"{markdown.machine(t.machine)} | {_verdict(t)}{' †' if _noisy(t) else ''} |"
        )
    return "\n".join(lines)


def method(m: dict) -> str:
    return (
        f"Every ratio comes from {m['pairs']} interleaved pairs ({m['slow_pairs']} where one phase takes 10+ s): the "
        f"two sides run one phase each (about {m['seconds']:g} s of the same work), the order alternating A B, B A, … "
        "so a drift in the machine's speed hits both sides; the ratio is taken per pair and quoted as the median "
        "with the min–max of the pairs. No SQL text repeats across phases (each phase — each pass, for TPC-H — names "
        "its own nonce as a subquery alias: same plan, new text), except where the result cache is what is measured. "
        "Beside each "
        "figure: the 1-minute load average before the comparison → at its phases' starts (the benchmark's own "
        "clients and servers count in it), and the cores that processes *outside* the benchmark kept busy during "
        "its phases, median (max) — the neighbours' share of the 2 cores."
    )


def _load(x: list | None) -> str:
    return " / ".join(f"{v:.2f}" for v in x) if x else "?"


def benchmarks_md(r: dict, images: dict[str, str], notes: str) -> str:
    m = r["meta"]
    L = [
        "# Benchmarks",
        "",
        f"Produced by `{COMMAND}` (`python -m bench.harness` then `python -m bench.report`).",
        "",
        f"- **Date**: {m['date']}; commit `{m.get('commit')}`; total run {m.get('total_seconds', '?')} s",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, host `{m['host']}` — shared with "
        "other engineers' work",
        f"- **Load average** (1/5/15 min) before the run: {_load(m.get('load_before'))}; after: "
        f"{_load(m.get('load_after'))}; others' cores over the whole run: {m.get('run_others_cores', '?')}, "
        f"steal {m.get('run_steal_cores', '?')}",
        f"- **Software**: Python {m['python']}, DuckDB {m['duckdb']}, pyarrow {m['pyarrow']}, "
        f"{m.get('roapi') or 'ROAPI not installed'}",
        f"- **Data**: TPC-H scale {m['scale']:g} (tpchgen-cli), managed Delta tables; ROAPI gets the live Parquet "
        "files of each table",
        f"- **Run**: {m['pairs']} pairs, {m['seconds']:g} s phases"
        + (f", sections {', '.join(m['only'])}" if m.get("only") else "")
        + (f", server settings {m['server_env']}" if m.get("server_env") else "")
        + f"; skipped: {', '.join(m.get('skipped') or []) or 'nothing'}",
        "",
        "## Method",
        "",
        method(m),
        "",
        "## Headline",
        "",
        headline(r),
        "",
    ]
    n = 0
    for mod in all_sections():
        result = r.get(mod.NAME)
        if result is None:
            continue
        n += 1
        L += [f"## {n}. {mod.TITLE}", ""]
        if "error" in result:
            L += [f"**This section failed in this run:** `{result['error']}`", ""]
        elif hasattr(mod, "render"):
            L += mod.render(result, m, images)
    if notes:
        L += ["## Missed targets and what explains them", "", notes.strip(), ""]
    return "\n".join(L) + "\n"


def readme_section(r: dict, readme: Path) -> None:
    text = readme.read_text()
    start = text.index("## Benchmarks")
    end = text.find("\n## ", start + 3)
    m = r["meta"]
    body = (
        "## Benchmarks\n\n`make bench` runs every comparison in one go (about 35 minutes on a quiet 2-core machine, 11 of them the object-store section) and writes "
        "[BENCHMARKS.md](BENCHMARKS.md) and the plots in `bench/plots/`; `bench/NOTES.md` records each optimisation "
        f"attempt. Every ratio is the median of {m['pairs']} interleaved pairs (A B, B A, …) with the min–max of the "
        f"pairs beside it. Latest run: {m['date']}, TPC-H SF{m['scale']:g}, {m['cores']} cores, load average before "
        f"{_load(m.get('load_before'))}; processes outside the benchmark kept {m.get('run_others_cores', '?')} of the "
        f"{m['cores']} cores busy over the run ({m.get('total_seconds', '?')} s).\n\n{headline(r)}\n"
    )
    readme.write_text(text[:start] + body + (text[end:] if end != -1 else ""))


def plots(r: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    for mod in all_sections():
        result = r.get(mod.NAME)
        if result and "error" not in result and "skipped" not in result and hasattr(mod, "plot"):
            made += mod.plot(result, r["meta"], out)
    return made


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
        made.append("flamegraph.svg")
    bench_md = Path(args.benchmarks)
    try:
        rel = str(plot_dir.resolve().relative_to(bench_md.parent.resolve()))
    except ValueError:
        rel = str(plot_dir.resolve())
    images = {name: f"{rel}/{name}" for name in made}
    notes = Path(args.notes).read_text() if args.notes and Path(args.notes).exists() else ""
    bench_md.write_text(benchmarks_md(r, images, notes))
    if args.readme:
        readme_section(r, Path(args.readme))


if __name__ == "__main__":
    main()
