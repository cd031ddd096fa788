"""The benchmark's sections: one module per comparison, found here by name, run in ``ORDER``.

A section module defines

    NAME: str                      the key in results.json and the ``--only`` choice
    ORDER: int                     where it runs and where the report puts it
    TITLE: str                     its heading in BENCHMARKS.md
    run(ctx: Context) -> dict      measure (through ``bench.interleave``) and return the figures

and optionally

    add_arguments(parser)          its own command-line options (``--export-rows`` ...)
    targets(result, meta) -> list[Target]    its rows of the headline table
    render(result, meta, images) -> list[str]  its part of BENCHMARKS.md (markdown lines); ``images``
                                   maps each PNG ``plot`` made to its path from BENCHMARKS.md
    plot(result, meta, out: Path) -> list[str]       PNGs written under ``out`` (file names)

A new section is one new file here: nothing else changes (``--only NAME`` runs it alone).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from bench import interleave


def all_sections() -> list[ModuleType]:
    """Every section module of this package, in ``ORDER``."""
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m for m in mods if hasattr(m, "run")), key=lambda m: (m.ORDER, m.NAME))


def log(msg: str) -> None:
    import sys

    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """What a section gets: the options, the data, where to write, and what is installed."""

    args: argparse.Namespace
    data: Path
    out: Path
    roapi: bool
    wrk: bool
    py_spy: bool
    server_env: dict[str, str] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        return self.args.pairs

    @property
    def slow_pairs(self) -> int:
        """Rounds for comparisons whose phases are long (ROAPI's TPC-H pass, NDJSON ingest)."""
        return min(self.args.pairs, self.args.slow_pairs)

    @property
    def seconds(self) -> float:
        return self.args.seconds

    def interleave(self, contenders: dict[str, interleave.Phase], rounds: int | None = None) -> dict:
        return interleave.interleave(contenders, rounds or self.pairs, log=log)

    def colonnade(self, **kwargs):
        from bench import servers

        return servers.colonnade(self.data, env=self.server_env, **kwargs)


@dataclass
class Target:
    """One row of the headline: a figure (median of the rounds, their min–max), the target it
    is held to, and the machine while it was measured."""

    name: str
    section: str
    figure: dict  # interleave.spread(): median, min, max, values
    unit: str  # "×", " ms", " MB/s", " MB"
    target: str  # as printed, e.g. "≥ 0.95×"
    meets: Callable[[float], bool] | None  # None: reported, not held to a target
    machine: dict | None = None  # interleave.machine()

    @property
    def met(self) -> bool | None:
        if self.meets is None or self.figure.get("median") is None:
            return None
        return self.meets(self.figure["median"])

    @property
    def rounds_meeting(self) -> tuple[int, int] | None:
        if self.meets is None:
            return None
        xs = self.figure.get("values") or []
        return sum(1 for x in xs if self.meets(x)), len(xs)
