"""The benchmark's method (bench/interleave.py): rounds alternate, ratios are taken per round,
nonces change the text every cache keys on but never the result, and the machine readings
count CPU by whose it was — all without asserting anything about how fast the machine is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from bench import interleave, markdown, procstat
from bench.clients import InProcess, window_work
from bench.common import tpch_query


def _scripted(values: list[float]) -> interleave.Phase:
    """A contender whose n-th phase reports ``values[n]``."""
    it = iter(values)
    return lambda tag: {"value": next(it), "tag": tag}


def test_rounds_alternate_and_each_ratio_is_taken_within_its_round() -> None:
    a, b = [1.0, 2.0, 4.0, 8.0, 16.0], [1.5, 2.2, 4.4, 12.0, 16.0]
    cmp = interleave.interleave({"a": _scripted(a), "b": _scripted(b)}, 5)
    orders = [[p["contender"] for p in cmp["phases"] if p["round"] == r] for r in range(5)]
    assert orders == [["a", "b"], ["b", "a"]] * 2 + [["a", "b"]]
    r = interleave.ratio(cmp, "b", "a")
    assert r["values"] == [1.5, 1.1, 1.1, 1.5, 1.0]
    assert (r["median"], r["min"], r["max"]) == (1.1, 1.0, 1.5)
    assert interleave.values(cmp, "a") == a  # every phase kept, in round order
    for p in cmp["phases"]:
        assert p["ended"] >= p["started"] and p["others_cores"] >= 0 and p["load1"] >= 0


def test_the_ratio_against_several_takes_the_smallest_of_that_round() -> None:
    cmp = interleave.interleave(
        {"x": _scripted([2.0, 3.0, 4.0]), "d": _scripted([1.0, 6.0, 8.0]), "p": _scripted([4.0, 1.5, 2.0])}, 3
    )
    assert [p["contender"] for p in cmp["phases"][3:6]] == ["p", "d", "x"]
    assert interleave.ratio(cmp, "x", ["d", "p"])["values"] == [2.0, 2.0, 2.0]


def test_a_failed_phase_drops_its_round_only() -> None:
    cmp = interleave.interleave({"a": _scripted([1.0, None, 1.0]), "b": _scripted([2.0, 2.0, 3.0])}, 3)  # type: ignore[list-item]
    assert interleave.ratio(cmp, "b", "a")["values"] == [2.0, 3.0]
    assert interleave.spread([]) == {"median": None, "min": None, "max": None, "values": []}


def test_nonces_never_repeat() -> None:
    tags = [interleave.nonce() for _ in range(10_000)]
    assert len(set(tags)) == len(tags)
    seen: list[str] = []
    interleave.interleave({"a": lambda t: {"value": seen.append(t) or 1.0}, "b": _scripted([1.0] * 4)}, 4)
    assert len(set(seen)) == 4


@pytest.fixture(scope="module")
def ceiling(tpch_dir: Path) -> Iterator[InProcess]:
    con = InProcess(tpch_dir)
    yield con
    con.close()


@pytest.mark.parametrize("n", range(1, 23))
def test_a_nonce_changes_the_cache_key_but_not_the_rows(n: int, ceiling: InProcess, db: engine.Database) -> None:
    """Differential: each TPC-H query as sent and under two nonces gives the same rows in the
    same order on DuckDB with Colonnade's views; Colonnade's cache key differs per nonce."""
    sql = tpch_query(n)
    a, b = interleave.with_nonce(sql, interleave.nonce()), interleave.with_nonce(sql, interleave.nonce())
    expected = ceiling.con.sql(sql).fetchall()
    assert ceiling.con.sql(a).fetchall() == expected == ceiling.con.sql(b).fetchall()
    assert db.prepare(a).key() != db.prepare(b).key()


_BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"


def test_cpu_of_the_benchmarks_own_children_is_its_own_even_after_they_exit() -> None:
    before = interleave.Machine.read()
    subprocess.run([sys.executable, "-c", _BURN], check=True)
    after = interleave.Machine.read()
    assert (after.own - before.own) / procstat.TICKS >= 0.35


def test_cpu_of_a_process_outside_the_benchmark_counts_as_others(tmp_path: Path) -> None:
    done, burner = tmp_path / "done", tmp_path / "burn.py"
    burner.write_text(_BURN + f"open({str(done)!r}, 'w').close()\n")
    # Double fork: the burner is re-parented away from this process tree, like a neighbour's job.
    launcher = f"import os, sys\nif os.fork() == 0:\n    os.setsid()\n    os.execv(sys.executable, [sys.executable, {str(burner)!r}])\n"
    before = interleave.Machine.read()
    subprocess.run([sys.executable, "-c", launcher], check=True)
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = interleave.Machine.read()
    others = ((after.busy - before.busy) - (after.own - before.own)) / procstat.TICKS
    assert done.exists() and others >= 0.35


def test_machine_summary_and_markdown() -> None:
    cmp = interleave.interleave({"a": _scripted([1.0, 2.0]), "b": _scripted([2.0, 2.0])}, 2)
    m = interleave.machine(cmp)
    assert m["load_min"] <= m["load_max"] and m["others_median"] <= m["others_max"]
    assert markdown.fig(interleave.ratio(cmp, "b", "a")) == "1.50× (1.00–2.00)"
    assert markdown.fig(interleave.spread([3.0])) == "3.00×"  # one value: no range
    table = markdown.rounds_table(cmp, lambda p: f"{p['value']:.1f}")
    assert table[2].startswith("| 1 | a b | 1.0 | 2.0 |") and table[3].startswith("| 2 | b a | 2.0 | 2.0 |")
    assert os.getpid() in procstat.tree(os.getpid())


def test_throughput_counts_the_share_of_each_query_inside_the_window() -> None:
    # Two clients, window [0, 10]: one ran 0-4, 4-8, 8-12 (the last half inside); the other a
    # single 0-15 query (2/3 inside). A count of completions would say 2 or 4, not 3.17.
    spans = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (0.0, 15.0)]
    assert window_work(spans, 0.0, 10.0) == pytest.approx(2 + 0.5 + 10 / 15)
    assert window_work([(11.0, 12.0)], 0.0, 10.0) == 0.0
    assert window_work([(-1.0, 1.0)], 0.0, 10.0) == pytest.approx(0.5)


def test_a_variant_names_its_workers_and_settings():
    from bench.variants import parse_variant

    assert parse_variant("1w:1") == ("1w", 1, {})
    assert parse_variant("2w-slots:2:COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES=2,X=a=b:c") == (
        "2w-slots",
        2,
        {"COLONNADE_LIMITS_MAX_CONCURRENT_QUERIES": "2", "X": "a=b:c"},
    )
