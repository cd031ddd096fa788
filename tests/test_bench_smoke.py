"""The benchmark harness end to end at a tiny scale, so `make bench` cannot rot: the sections
with targets run as 2 interleaved pairs of 0.2 s phases on TPC-H 0.01, then the report renders.
Left out for time (the file stays under ~40 s): ROAPI (a 20 s start-up; `make bench` installs
it), the NDJSON ingest, the naive-service comparison (`gil`, no target), the profile (py-spy
is a bench-only install) and governance (40 s even at this scale: `--only governance`). Nothing here judges speed: only that every comparison
produced its pairs and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness, report
from bench.sections import all_sections

SECTIONS = ["tpch", "concurrency", "small", "exports", "files", "ingest"]
PAIRS = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tpch_dir: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    args = ["--data", str(tpch_dir), "--scale", "0.01", "--out", str(out), "--pairs", str(PAIRS), "--seconds", "0.2"]
    args += ["--clients", "2", "--export-rows", "2000", "--ingest-inputs", "csv", "--no-roapi", "--strict"]
    return harness.main([*args, "--only", *SECTIONS]), out


def _comparisons(r: dict) -> list[dict]:
    """Every interleaved comparison anywhere in the results."""
    found: list[dict] = []

    def walk(x: object) -> None:
        if isinstance(x, dict):
            if "phases" in x and "contenders" in x:
                found.append(x)
                return
            for v in x.values():
                walk(v)

    walk(r)
    return found


def test_only_the_sections_asked_for_ran_and_every_one_produced_figures(results: tuple[dict, Path]) -> None:
    r, out = results
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(r))
    assert set(r) == {"meta", *SECTIONS} and not any("error" in r[s] for s in SECTIONS)
    assert {m.NAME for m in all_sections()} >= {*SECTIONS, "gil", "profile"}
    assert set(r["tpch"]["per_query_s"]) == {str(n) for n in range(1, 23)} and not r["tpch"]["row_count_mismatch"]
    for key in ("1w_q1", "1w_mix", "2w_q1", "2w_mix"):
        assert len(r["concurrency"]["ratios"][key]["values"]) == PAIRS
        assert r["concurrency"]["health"][key]["samples"] > 0, key
    assert r["exports"]["arrow_mb_per_s"]["median"] > 0 and r["exports"]["lineitem_csv"]["bytes"] > 0
    assert set(r["ingest"]["ratios"]) == {"csv"} and r["ingest"]["peak_rss_mb"] > 0
    if "wrk" not in r["meta"]["skipped"]:
        assert r["small"]["ratio"]["median"] > 0 and r["small"]["cache_after"].get("hit", 0) > 0
    assert r["files"]["total_ratio"]["median"] > 0


def test_every_comparison_is_interleaved_pairs_with_new_text_each_phase(results: tuple[dict, Path]) -> None:
    r, _ = results
    comparisons = _comparisons(r)
    assert len(comparisons) == 12 + (0 if "wrk" in r["meta"]["skipped"] else 1)
    nonces = [p["nonce"] for c in comparisons for p in c["phases"]]
    assert len(nonces) == len(set(nonces))
    for c in comparisons:
        names = c["contenders"]
        assert c["rounds"] == PAIRS and len(c["phases"]) == PAIRS * len(names)
        for rnd in range(PAIRS):
            order = [p["contender"] for p in sorted(c["phases"], key=lambda p: p["position"]) if p["round"] == rnd]
            assert order == (names if rnd % 2 == 0 else names[::-1])
        for p in c["phases"]:
            assert p["value"] > 0 and p["others_cores"] >= 0 and p["load1"] >= 0


def test_report_shows_median_range_load_and_verdict(results: tuple[dict, Path], tmp_path: Path) -> None:
    _, out = results
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nold\n\n## After\n\nkept\n")
    bench_md = tmp_path / "BENCHMARKS.md"
    args = ["--benchmarks", str(bench_md), "--plots", str(tmp_path / "plots"), "--readme", str(readme), "--notes", ""]
    report.main([str(out / "results.json"), *args])
    text = bench_md.read_text()
    assert "## Method" in text and "## Headline" in text and "targets met" in text
    assert "| comparison | median (min–max of pairs) | pairs meeting it | target | load" in text
    assert (
        "Colonnade time ÷ in-process DuckDB | " in text
        and "/health p99 under the 2-client q1 load (2 workers; control" in text
    )
    assert "Arrow export ÷ raw pyarrow IPC" in text and ". Ingestion" in text and "<details>" in text
    assert (tmp_path / "plots" / "concurrency.png").exists()
    updated = readme.read_text()
    assert "| comparison" in updated and "old" not in updated and "## After\n\nkept" in updated
