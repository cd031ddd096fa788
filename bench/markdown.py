"""How the report writes a figure: the median, the min–max of the rounds, and the machine."""

from __future__ import annotations

from collections.abc import Callable


def num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def fig(figure: dict | None, unit: str = "×", digits: int = 2) -> str:
    """``1.08× (1.02–1.12)``: the median and, when there were several rounds, their range."""
    if not figure or figure.get("median") is None:
        return "—"
    text = f"{num(figure['median'], digits)}{unit}"
    if len(figure.get("values") or []) > 1:
        text += f" ({num(figure['min'], digits)}–{num(figure['max'], digits)})"
    return text


def machine(m: dict | None) -> str:
    """``2.1 → 3.0–6.2 · others 0.3 (0.9)``: the load average before the comparison and at its
    phases' starts; the cores other processes kept busy during its phases, median (max)."""
    if not m:
        return "—"
    text = f"{m['load_before']:.1f} → {m['load_min']:.1f}–{m['load_max']:.1f} · others {m['others_median']:.2f} ({m['others_max']:.2f})"
    if m.get("steal_max"):
        text += f" · steal ≤ {m['steal_max']:.2f}"
    return text


def rounds_table(
    comparison: dict, figure: Callable[[dict], str], ratio: Callable[[dict[str, dict]], str] | None = None
) -> list[str]:
    """Every round of a comparison: the order run, each contender's figure, the round's ratio,
    and the machine during each phase (1-minute load at its start, others' cores during it)."""
    names = comparison["contenders"]
    head = ["round", "order", *names] + (["ratio"] if ratio else []) + ["load", "others' cores"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_round: dict[int, dict[str, dict]] = {}
    for p in comparison["phases"]:
        by_round.setdefault(p["round"], {})[p["contender"]] = p
    for r, phases in sorted(by_round.items()):
        order = " ".join(n for n, _ in sorted(phases.items(), key=lambda kv: kv[1]["position"]))
        cells = [str(r + 1), order] + [figure(phases[n]) if n in phases else "—" for n in names]
        if ratio:
            cells.append(ratio(phases))
        load = "/".join(f"{phases[n]['load1']:.1f}" for n in names if n in phases)
        others = "/".join(f"{phases[n]['others_cores']:.2f}" for n in names if n in phases)
        lines.append("| " + " | ".join([*cells, load, others]) + " |")
    return lines


def details(summary: str, lines: list[str]) -> list[str]:
    """A collapsed block (GitHub renders ``<details>``), for the per-round tables."""
    return ["<details><summary>" + summary + "</summary>", "", *lines, "", "</details>", ""]
