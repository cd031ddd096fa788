"""The differential fuzzer of grants and the sandbox: generated queries with nested, recursive
and shadowing CTEs, subqueries, LATERAL joins, set operations, and names that are catalog
tables, quoted or qualified, file paths, internal names, or Unicode look-alikes of a table
(U+212A KELVIN SIGN folds to "k" in Python, never in DuckDB).

Every query is run with a token granted one table, and judged three ways:
1. Colonnade's validator: a query it accepts reads only granted tables;
2. DuckDB's own parser (``get_table_names``, another entry point than the one the validator
   uses) on the SQL that runs: it names only the granted table's relation and generated CTEs;
3. the run: no row of another table, no byte of the token store in the answer or the error, no
   read of their files (atime canaries), no path or internal name, never a 5xx.

Derandomised; ``COLONNADE_FUZZ_EXAMPLES`` sets the number of queries per engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import ColonnadeError
from tests.security.relations import EXTERNAL, GRANTED, SECRETS, Vault

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "300"))
ENGINES = ("duckdb", "polars")


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    return Vault(tmp_path_factory.mktemp("vault"))


@pytest.fixture(scope="module")
def vault_db(vault: Vault) -> Iterator[engine.Database]:
    with vault.database() as db:
        yield db


def relation_names(vault: Vault) -> list[str]:
    """Every name a query could try: catalog tables in many spellings, paths to the files of
    tables it may not read and to the token store, internal names, look-alikes."""
    data = vault.data_dir
    secret = "keys"
    kelvin = "\u212aeys"  # Python: "\u212aeys".lower() == "keys"; DuckDB folds ASCII only
    return [
        GRANTED,
        GRANTED.upper(),
        f'"{GRANTED}"',
        f"main.{GRANTED}",
        f"colonnade.main.{GRANTED}",
        secret,
        f'"{secret}"',
        "VAULT",
        f"main.{secret}",
        EXTERNAL,
        f'"{kelvin}"',
        f'"{data}/{secret}/*.parquet"',
        f'"{data}/[kv]eys/*.parquet"',
        f'"{data}/[\u212av]eys/*.parquet"',
        f'"{data}/{secret}"',
        f'"{data}/.colonnade/tokens.json"',
        f'"{vault.external_dir}/part-0.parquet"',
        f"'{data}/vault/*.parquet'",
        '"keys/*.parquet"',
        '"keys@v0"',
        f'"rel_{secret}"',
        "cte_1",
        "cte_2",
        "sqlite_master",
        "duckdb_tables",
        "information_schema.tables",
        "memory.main.keys",
        "temp.main.keys",
        "system.main.duckdb_views",
        "x",
        "y",
        '"X"',
    ]


ALIASES = ["a", "t", "keys", "granted", '"x"']


@st.composite
def query(draw: st.DrawFn, names: st.SearchStrategy[str], cte_names: list[str], depth: int) -> str:
    """A query of at most ``depth`` nested levels whose relations are drawn from ``names``.
    A WITH makes its own CTE names likely inside it, so references to them (and shadowing of
    catalog names, paths and look-alikes) are common, as are self-references."""
    shape = draw(st.sampled_from(["select", "with", "union", "select"] if depth > 0 else ["leaf"]))
    if shape == "leaf":
        return f"SELECT * FROM {draw(names)}"
    if shape == "union":
        return f"{draw(query(names, cte_names, depth - 1))} UNION ALL {draw(query(names, cte_names, depth - 1))}"
    if shape == "with":
        defined = draw(st.lists(st.sampled_from(cte_names), min_size=1, max_size=3))
        scoped = st.one_of(st.sampled_from(defined), st.sampled_from(defined), names)
        ctes = []
        for name in defined:
            form = draw(st.sampled_from(["query", "self", "recursive"]))
            if form == "query":
                ctes.append(f"{name} AS ({draw(query(scoped, cte_names, depth - 1))})")
            elif form == "self":
                ctes.append(f"{name} AS (SELECT * FROM {name})")
            else:
                ctes.append(f"{name}(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM {name} WHERE n < 3)")
        recursive = "RECURSIVE " if draw(st.booleans()) else ""
        return f"WITH {recursive}{', '.join(ctes)} {draw(query(scoped, cte_names, depth - 1))}"
    projection = draw(st.sampled_from(["*", "count(*)", "scalar"]))
    if projection == "scalar":
        projection = f"(SELECT count(*) FROM {draw(from_item(names, cte_names, depth - 1))}) AS c"
    where = draw(st.sampled_from(["", "exists", "in"]))
    if where == "exists":
        where = f" WHERE EXISTS ({draw(query(names, cte_names, depth - 1))})"
    elif where == "in":
        where = f" WHERE 1 IN (SELECT 1 FROM {draw(from_item(names, cte_names, depth - 1))})"
    return f"SELECT {projection} FROM {draw(from_item(names, cte_names, depth))}{where}"


@st.composite
def from_item(draw: st.DrawFn, names: st.SearchStrategy[str], cte_names: list[str], depth: int) -> str:
    kind = draw(st.sampled_from(["name", "aliased", "subquery", "lateral", "join", "range"]))
    alias = draw(st.sampled_from(ALIASES))
    if kind == "name" or depth <= 0:
        return draw(names)
    if kind == "aliased":
        return f"{draw(names)} AS {alias}"
    if kind == "subquery":
        return f"({draw(query(names, cte_names, depth - 1))}) AS {alias}"
    if kind == "lateral":
        return f"{draw(names)}, LATERAL ({draw(query(names, cte_names, depth - 1))}) AS {alias}"
    if kind == "join":
        return f"{draw(names)} JOIN {draw(from_item(names, cte_names, depth - 1))} ON true"
    return "range(2) AS r(i)"


def queries(names: list[str]) -> st.SearchStrategy[str]:
    # Two draws in three from names a query may read or define, so that deep shapes run too.
    benign = [n for n in names if n.strip('"').lower() in {GRANTED, "x", "y"} or n.startswith("main.")]
    name = st.one_of(st.sampled_from(benign), st.sampled_from(benign), st.sampled_from(names))
    # A CTE's name is one identifier: any name but the qualified ones.
    cte_names = [n for n in names if n.startswith(('"', "'")) or "." not in n]
    return query(name, cte_names, 3)


def _parser() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"enable_external_access": False})
    con.execute("SET lock_configuration = true")
    return con


@pytest.mark.parametrize("engine_name", ENGINES)
def test_no_query_reaches_what_its_token_was_not_granted(
    vault: Vault, vault_db: engine.Database, engine_name: str
) -> None:
    granted_relation = vault_db.table(GRANTED).relation
    internal = [vault_db.table(t).relation for t in (GRANTED, *SECRETS, EXTERNAL)]
    parser = _parser()
    outcomes = {"ran": 0, "refused": 0, "engine_error": 0, "parser_gave_up": 0}

    @given(sql=queries(relation_names(vault)))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(sql: str) -> None:
        vault.arm()
        shown = ""
        try:
            prepared = vault_db.prepare(sql, engine=engine_name, token=vault.token)
        except ColonnadeError as exc:
            assert exc.client_error, f"{exc.code}: {exc.detail}\n{sql}"
            shown = exc.detail
            outcomes["refused"] += 1
        else:
            # 1. the validator: only the granted table
            assert set(prepared.tables) <= {GRANTED}, sql
            # 2. DuckDB's parser, by another entry point: only generated names
            try:
                named = parser.get_table_names(prepared.sql)
            except duckdb.Error:  # it binds a little, and a query DuckDB cannot bind reads nothing
                outcomes["parser_gave_up"] += 1
            else:
                assert named - set(prepared.query.ctes) <= {granted_relation}, (named, prepared.sql)
            # 3. the run
            try:
                with vault_db.execute(prepared, timeout_s=30) as result:
                    shown = str(result.arrow().to_pylist())
                outcomes["ran"] += 1
            except ColonnadeError as exc:
                assert exc.client_error, f"{exc.code}: {exc.detail}\n{sql}"
                shown = exc.detail
                outcomes["engine_error"] += 1
        assert not vault.secrets_in(shown, sql), (vault.secrets_in(shown, sql), sql, shown[:500])
        assert not [name for name in internal if name in shown], (sql, shown[:500])
        assert not vault.files_read(), (vault.files_read(), sql)

    check()
    print(f"{engine_name}: {outcomes}")
    # The generator must reach every verdict, or it proves little.
    assert outcomes["ran"] and outcomes["refused"] and outcomes["engine_error"], outcomes


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_canaries_would_see_a_read(vault: Vault, vault_db: engine.Database, engine_name: str) -> None:
    """The control: an admin reading a secret table moves its canaries (so their silence
    above means something) and shows its marker."""
    vault.arm()
    rows = vault_db.sql("SELECT label FROM keys", engine=engine_name).arrow().to_pylist()
    assert vault.secrets_in(str(rows)) == ["a secret table's rows"]
    assert vault.files_read()


def test_the_tables_exist(vault_db: engine.Database) -> None:
    assert set(vault_db.tables()) == {GRANTED, *SECRETS, EXTERNAL}
    assert Path(vault_db.catalog.data_dir, ".colonnade", "tokens.json").is_file()
