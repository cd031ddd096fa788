"""Data for the breadth suites: the analyst corpus's tables and TPC-DS at a tiny scale.

The corpus tables are made by DuckDB from arithmetic on ``range`` (no randomness), with the
shapes analysts meet: NULLs, negative and half-way decimals, big integers, Unicode, JSON text,
lists, structs and maps, timestamps for ASOF joins.

TPC-DS: DuckDB 2.0's wheel lacks the ``tpcds`` extension and extensions cannot be downloaded
here, but PyPI carries it as a package (``duckdb-extension-tpcds``) for DuckDB 1.5.5. A side
virtual environment holds that pair; its ``dsdgen`` writes Parquet, which Colonnade ingests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import duckdb
import pyarrow as pa

TPCDS_VENV = Path(os.environ.get("COLONNADE_TPCDS_VENV", Path(__file__).resolve().parent.parent / ".venv-tpcds"))
TPCDS_PACKAGES = ("duckdb==1.5.5", "duckdb-extension-tpcds==1.5.5")

CORPUS_TABLES = {
    "users": """
        SELECT range::INTEGER AS user_id,
               ['Ana', 'Bo', 'Chloé', 'Dmitri', 'Eun-ji', 'Fatima', 'Günther', 'Hiro', '李雷', 'Zoë 🚀'][range % 10 + 1]
                   || ' ' || (range // 10)::VARCHAR AS name,
               lower(['ana', 'bo', 'chloe', 'dmitri', 'eunji', 'fatima', 'gunther', 'hiro', 'li', 'zoe'][range % 10 + 1])
                   || range::VARCHAR || '@' || ['example.com', 'mail.org', 'corp.io'][range % 3 + 1] AS email,
               CASE WHEN range % 11 = 0 THEN NULL ELSE ['PT', 'FR', 'DE', 'JP', 'US', 'BR'][range % 6 + 1] END AS country,
               DATE '2020-01-01' + (range * 7 % 1500)::INTEGER AS signup,
               (1950 + range * 13 % 55)::SMALLINT AS birth_year,
               ['free', 'pro', 'team'][range % 3 + 1] AS plan,
               CASE WHEN range % 7 = 0 THEN NULL ELSE (range * 37 % 1000) / 8.0 - 40 END AS score,
               CASE WHEN range % 5 = 0 THEN [] ELSE ['new', 'vip', 'beta', 'churn'][1:(range % 4 + 1)] END AS tags
        FROM range(200)""",
    "events": """
        SELECT range::BIGINT AS event_id,
               (range * 7 % 200)::INTEGER AS user_id,
               TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (range * 3917 % 7776000) SECOND AS ts,
               ['view', 'click', 'buy', 'view', 'signup'][range % 5 + 1] AS kind,
               CASE WHEN range % 9 = 0 THEN NULL ELSE ((range * 131 % 20001) - 5000) / 100.0 END::DECIMAL(10, 2) AS amount,
               (range * 17 % 50)::INTEGER AS qty,
               'https://' || ['shop', 'www', 'api'][range % 3 + 1] || '.example.com/'
                   || ['p', 'c', 'search'][range % 3 + 1] || '/' || (range % 97)::VARCHAR
                   || CASE WHEN range % 4 = 0 THEN '?q=term' || (range % 13)::VARCHAR ELSE '' END AS url,
               '{"device":"' || ['ios', 'android', 'web'][range % 3 + 1] || '","os":{"name":"'
                   || ['iOS', 'Android', 'Linux'][range % 3 + 1] || '","version":' || (range % 5 + 10)::VARCHAR
                   || '},"items":[' || (range % 4)::VARCHAR || ',' || (range % 6)::VARCHAR || ']'
                   || CASE WHEN range % 10 = 0 THEN ',"coupon":null' ELSE ',"coupon":"C' || (range % 7)::VARCHAR || '"' END
                   || '}' AS payload,
               {'browser': ['firefox', 'chrome', 'safari', NULL][range % 4 + 1], 'version': (range % 30 + 90)::INTEGER} AS props,
               MAP {'source': ['ads', 'seo', 'mail'][range % 3 + 1], 'campaign': 'c' || (range % 5)::VARCHAR} AS attrs,
               [range % 10, range % 7, range % 3]::INTEGER[] AS items
        FROM range(2000)""",
    "prices": """
        SELECT ['ACME', 'BOLT', 'CRUX'][range % 3 + 1] AS symbol,
               TIMESTAMP '2024-03-01 09:00:00' + INTERVAL ((range // 3) * 60) SECOND AS ts,
               round(100 + (range * 7919 % 2000) / 100.0 + (range % 3) * 50, 2)::DOUBLE AS price
        FROM range(300)""",
    "trades": """
        SELECT range::INTEGER AS trade_id,
               ['ACME', 'BOLT', 'CRUX', 'DUSK'][range % 4 + 1] AS symbol,
               TIMESTAMP '2024-03-01 08:59:00' + INTERVAL (range * 37 % 6300) SECOND AS ts,
               (range * 13 % 90 + 1)::INTEGER AS qty
        FROM range(200)""",
    "sales": """
        SELECT r.region, p.product, y.year::INTEGER AS year, 'Q' || q.q::VARCHAR AS quarter,
               ((hash(r.region || p.product) % 1000) + y.year % 100 * 10 + q.q * 7.25)::DECIMAL(12, 2) AS revenue,
               (q.q * 3 + length(p.product))::INTEGER AS units
        FROM (VALUES ('north'), ('south'), ('east'), ('west')) r(region),
             (VALUES ('anvil'), ('bolt'), ('crate'), ('drill'), ('easel')) p(product),
             (VALUES (2023), (2024)) y(year),
             range(1, 5) q(q)""",
}


def corpus_tables() -> dict[str, pa.Table]:
    with duckdb.connect() as con:
        return {name: con.sql(sql).to_arrow_table() for name, sql in CORPUS_TABLES.items()}


# -- TPC-DS -------------------------------------------------------------------------------------

_DSDGEN = """
import pathlib, sys
import duckdb, duckdb_extension_tpcds
ext = next(pathlib.Path(duckdb_extension_tpcds.__file__).parent.rglob("tpcds.duckdb_extension"))
con = duckdb.connect(config={"allow_unsigned_extensions": True})
con.execute(f"LOAD '{ext}'")
con.execute(f"CALL dsdgen(sf={float(sys.argv[1])})")
out = pathlib.Path(sys.argv[2])
for (name,) in con.sql("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
    con.execute(f"COPY {name} TO '{out / name}.parquet' (FORMAT parquet)")
"""


def tpcds_python() -> Path:
    """The side environment's interpreter, created on first use (PyPI, about 40 MB)."""
    python = TPCDS_VENV / "bin" / "python"
    marker = TPCDS_VENV / ".installed"
    if not marker.exists() or marker.read_text() != " ".join(TPCDS_PACKAGES):
        venv.create(TPCDS_VENV, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *TPCDS_PACKAGES], check=True)
        marker.write_text(" ".join(TPCDS_PACKAGES))
    return python


def tpcds_parquet(out: Path, scale: float) -> list[Path]:
    """Generate every TPC-DS table at ``scale`` into ``out/<table>.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(tpcds_python()), "-c", _DSDGEN, str(scale), str(out)], check=True, env=_clean_env())
    return sorted(out.glob("*.parquet"))


def _clean_env() -> dict[str, str]:
    # The side interpreter must not see this environment's packages.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


if __name__ == "__main__":  # python -m tests.breadth_data OUT_DIR [SCALE]: the Parquet files only
    print(*tpcds_parquet(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.01), sep="\n")
