"""The benchmark harness end to end at a tiny scale (seconds), so `make bench` cannot rot.

ROAPI, wrk and py-spy parts run when their set-up is present (`make bench` installs them) and
are skipped otherwise; the Colonnade and in-process parts must always produce numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness, report


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tpch_dir: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    r = harness.main(
        [
            "--data",
            str(tpch_dir),
            "--scale",
            "0.01",
            "--out",
            str(out),
            "--runs",
            "1",
            "--duration",
            "1",
            "--wrk-seconds",
            "1",
            "--export-rows",
            "2000",
            "--profile-seconds",
            "1",
            "--clients",
            "4",
            "--roapi-timeout",
            "20",
            "--ingest-runs",
            "1",
            "--strict",
        ]
    )
    return r, out


def test_every_section_produced_numbers(results: tuple[dict, Path]) -> None:
    r, out = results
    assert json.loads((out / "results.json").read_text())["meta"]["scale"] == 0.01
    tpch = r["tpch"]
    assert set(tpch["per_query_s"]) == {str(n) for n in range(1, 23)}
    for q, row in tpch["per_query_s"].items():
        assert row["colonnade"] > 0 and row["inprocess"] > 0, q
    assert tpch["ratios"]["colonnade_vs_inprocess"] > 0
    assert not tpch["row_count_mismatch"]
    c = r["concurrency"]
    for key in ("inprocess_q1", "inprocess_mix", "colonnade_1w_q1", "colonnade_1w_mix", "colonnade_2w_q1"):
        assert c[key]["qps"] > 0 and c[key]["errors"] == 0, key
    assert c["colonnade_1w_q1"]["health"]["samples"] > 0
    assert c["colonnade_1w_q1"]["cpu"]["mean_cores"] > 0
    g = r["gil"]
    assert g["naive"]["qps"] > 0 and g["colonnade"]["qps"] > 0 and g["naive"]["errors"] == 0
    e = r["exports"]
    for fmt in ("json", "csv", "arrow", "parquet"):
        assert e["colonnade"][fmt]["bytes"] > 0 and e["colonnade"][fmt]["seconds"] > 0, fmt
    assert e["lineitem_csv"]["bytes"] > 0
    i = r["ingest"]
    assert i["results"]["colonnade ingest"]["s"] > 0 and i["peak_rss_mb"] > 0
    assert set(i["ratios"]) == {"csv", "ndjson_fail", "ndjson_quarantine"} and min(i["ratios"].values()) > 0
    o = r["objectstore"]
    assert (
        set(o["ratios"])
        == {
            "warm_vs_faster_inprocess",
            "cold_vs_faster_inprocess",
            "warm_vs_local_disk",
            "ingest_s3_vs_local",
        }
        and min(o["ratios"].values()) > 0
    )
    if harness.roapi_available():
        assert "roapi_ondemand" in tpch["totals_s"] and e["roapi_memory"]["arrow"]["bytes"] > 0
    if "wrk" not in r["meta"]["skipped"]:
        assert r["small"]["colonnade_rps"] > 0 and r["small"]["hello_rps"] > 0
    if "py-spy" not in r["meta"]["skipped"]:
        assert r["profile"]["shares"]["busy_samples"] > 0


def test_report_writes_tables_and_readme_section(results: tuple[dict, Path], tmp_path: Path) -> None:
    _, out = results
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmarks\n\nold\n\n## After\n\nkept\n")
    bench_md = tmp_path / "BENCHMARKS.md"
    report.main(
        [
            str(out / "results.json"),
            "--benchmarks",
            str(bench_md),
            "--plots",
            str(tmp_path / "plots"),
            "--readme",
            str(readme),
        ]
    )
    text = bench_md.read_text()
    assert "## Headline" in text and "in-process" in text and "## 5. Exports" in text and "## 7. Ingestion" in text
    assert "ingest lineitem CSV" in text and "| ndjson: colonnade ingest (quarantine) |" in text
    updated = readme.read_text()
    assert "| comparison" in updated and "old" not in updated and "## After\n\nkept" in updated
