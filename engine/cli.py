"""The ``colonnade`` command line. Exit codes: 0 ok, 1 user error (one line on stderr), 2 usage."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from engine.config import Settings, load_settings
from engine.errors import ColonnadeError

OUTPUT_FORMATS = ("table", "csv", "json", "ndjson", "parquet", "arrow")
ENGINE_CHOICES = ("duckdb", "polars", "spark", "auto")


def fail(message: str) -> None:
    click.echo("error: " + " ".join(message.split()), err=True)  # one line, whatever the engine said
    sys.exit(1)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--data`` and ``--config`` on every command; errors become one line and exit 1."""

    @click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Data directory (default ./data).")
    @click.option("--config", "config", type=click.Path(dir_okay=False), help="Config file (default ./colonnade.toml).")
    @functools.wraps(fn)
    def wrapper(*args: Any, data_dir: str | None, config: str | None, **kwargs: Any) -> Any:
        try:
            settings = load_settings(config, overrides={"data": {"dir": data_dir}})
            return fn(settings, *args, **kwargs)
        except ColonnadeError as exc:
            fail(exc.detail)
        except (OSError, ValueError) as exc:
            fail(str(exc))

    return wrapper


def open_db(settings: Settings, *, create: bool = False):
    from engine.database import Database

    return Database(settings=settings, create=create)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="colonnade")
def main() -> None:
    """Colonnade: SQL over Parquet and Delta tables, in a notebook, a CLI or over HTTP."""


@main.command()
@common
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8000).")
@click.option("--workers", type=int, help="Worker processes (default 1).")
@click.option("--engine", "engine_name", type=click.Choice(ENGINE_CHOICES), help="Default engine (default duckdb).")
def serve(settings: Settings, host: str | None, port: int | None, workers: int | None, engine_name: str | None) -> None:
    """Serve the data directory over HTTP."""
    from api.server import run

    for key, value in (("host", host), ("port", port), ("workers", workers), ("engine", engine_name)):
        if value is not None:
            setattr(settings.server, key, value)
    run(settings)


@main.command()
@common
@click.option("--scale", type=float, default=0.1, show_default=True, help="TPC-H scale factor.")
def demo(settings: Settings, scale: float) -> None:
    """Generate the TPC-H demo data set as managed Delta tables."""
    from engine.demo import TPCH_TABLES, create_demo

    with progress(len(TPCH_TABLES), "generating TPC-H") as advance:
        summaries = create_demo(settings.data_dir, scale, on_table=lambda s: advance(f"{s.table} ({s.rows:,} rows)"))
    rows = sum(s.rows for s in summaries)
    click.echo(f"demo data: {len(summaries)} tables, {rows:,} rows in {settings.data_dir}", err=True)


@main.command()
@common
@click.argument("sources", nargs=-1, required=True)
@click.option("--table", required=True, help="Target table name.")
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson", "parquet", "arrow"]), help="Input format.")
@click.option("--partition-by", help="Comma-separated partition columns.")
@click.option("--mode", type=click.Choice(["append", "overwrite"]), default="append", show_default=True)
@click.option("--schema-evolution", type=click.Choice(["strict", "add-columns"]), default="strict", show_default=True)
@click.option("--on-error", default="fail", show_default=True, help="fail, or quarantine=PATH to skip bad rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def ingest(
    settings: Settings,
    sources: tuple[str, ...],
    table: str,
    fmt: str | None,
    partition_by: str | None,
    mode: str,
    schema_evolution: str,
    on_error: str,
    as_json: bool,
) -> None:
    """Ingest files (CSV, NDJSON, Parquet, Arrow IPC; '-' for stdin) into a managed table, as one commit."""
    from engine.catalog import Catalog
    from engine.config import engine_resources
    from engine.ingest import ingest as run_ingest

    catalog = Catalog(settings.data_dir, settings.tables, create=True)
    partitions = [c.strip() for c in partition_by.split(",") if c.strip()] if partition_by else None
    threads, memory = engine_resources(settings)
    with ingest_progress(f"ingest {table}") as report:
        summary = run_ingest(
            catalog,
            list(sources),
            table,
            format=fmt,
            partition_by=partitions,
            mode=mode,
            schema_evolution=schema_evolution,
            on_error=on_error,
            progress=report,
            threads=max(2, threads * max(1, settings.server.workers)),
            memory_limit=f"{min(memory, 1024**3) // 1024**2}MB",
        )
    click.echo(json.dumps(summary.to_dict()) if as_json else str(summary))


class ingest_progress:
    """A transfer bar on a terminal (stderr): input MB read of the total, MB/s, and rows read and
    rows/s (estimated from the bytes: DuckDB reports progress as a fraction of its input)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def __enter__(self) -> Callable[[int, int, int | None], None] | None:
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[rows]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=None, rows="")
        return self.update

    def update(self, done: int, total: int, rows: int | None) -> None:
        elapsed = self._bar.tasks[0].elapsed or 0.0
        text = "" if rows is None else f"~{rows:,} rows" + (f" {rows / elapsed:,.0f} rows/s" if elapsed > 0 else "")
        self._bar.update(self._task, completed=done, total=total or None, rows=text)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@main.command()
@common
@click.argument("sql")
@click.option(
    "--engine", "engine_name", type=click.Choice(ENGINE_CHOICES), help="Engine (default: [server] engine, duckdb)."
)
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def query(settings: Settings, sql: str, engine_name: str | None, fmt: str, output: str | None) -> None:
    """Run one read-only SQL query."""
    from engine.formats import encode

    db = open_db(settings)
    result = db.sql(sql, engine=engine_name)
    out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        if fmt == "table":
            out.write(render_table(result.arrow()).encode() + b"\n")
        else:
            for chunk in encode(fmt, result.schema, result.reader(), elapsed_ms=lambda: result.elapsed_ms):
                out.write(chunk)
            if fmt == "json":
                out.write(b"\n")
    finally:
        if output:
            out.close()
        else:
            out.flush()
    db.close()


def render_table(table: Any) -> str:
    import polars as pl

    frame = pl.from_arrow(table)
    with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame)


@main.command()
@common
def tables(settings: Settings) -> None:
    """List tables."""
    db = open_db(settings)
    for name in db.tables():
        snap = db.table(name)
        rows = "" if snap.row_count is None else f"{snap.row_count:,} rows"
        version = "" if snap.version is None else f"v{snap.version}"
        click.echo(f"{name}\t{snap.kind}\t{version}\t{rows}")


@main.command()
@common
@click.argument("name")
def schema(settings: Settings, name: str) -> None:
    """Show a table's columns and types."""
    snap = open_db(settings).table(name)
    for field in snap.schema:
        part = "\t(partition)" if field.name in snap.partitions else ""
        click.echo(f"{field.name}\t{field.type}{'' if field.nullable else ' not null'}{part}")


@main.command()
@common
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def history(settings: Settings, name: str, as_json: bool) -> None:
    """Show the versions of a managed table: version, time, operation, rows added."""
    from engine.storage import history as table_history

    for entry in table_history(open_catalog(settings), name):
        if as_json:
            click.echo(json.dumps(entry, default=str))
            continue
        when = _iso(entry["timestamp"])
        rows = "" if entry["rows_added"] is None else f"rows_added={entry['rows_added']}"
        click.echo(f"v{entry['version']}\t{when}\t{entry['operation']}\t{rows}")


@main.command()
@common
@click.argument("name")
@click.option("--target-size", default="128MB", show_default=True, help="Target file size.")
def compact(settings: Settings, name: str, target_size: str) -> None:
    """Rewrite small files into target-size files, as one commit (same rows)."""
    from engine.config import parse_size
    from engine.storage import compact as compact_table

    with progress(1, f"compacting {name}") as advance:
        out = compact_table(open_catalog(settings), name, parse_size(target_size))
        advance("done")
    click.echo(f"{name}: {out['files_removed']} file(s) compacted into {out['files_added']} → version {out['version']}")


@main.command()
@common
@click.argument("name")
@click.option(
    "--retain-hours", type=float, default=168.0, show_default=True, help="Keep files versions this recent need."
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted.")
def vacuum(settings: Settings, name: str, retain_hours: float, dry_run: bool) -> None:
    """Delete files no retained version needs (and leftovers of crashed ingests)."""
    from engine.storage import vacuum as vacuum_table

    files = vacuum_table(open_catalog(settings), name, retain_hours, dry_run=dry_run)
    for f in files if dry_run else ():
        click.echo(f)
    click.echo(f"{name}: {len(files)} file(s) {'would be ' if dry_run else ''}deleted", err=dry_run)


@main.command()
@common
@click.argument("name")
@click.option("--to-version", type=int, required=True, help="The version to restore.")
def rollback(settings: Settings, name: str, to_version: int) -> None:
    """Restore an earlier version as a new commit (history is kept)."""
    from engine.storage import rollback as rollback_table

    version = rollback_table(open_catalog(settings), name, to_version)
    click.echo(f"{name}: restored version {to_version} → version {version}")


@main.group()
def token() -> None:
    """Manage API bearer tokens."""


@token.command("create")
@common
@click.option("--name", required=True, help="A name for the token (shown in the query log).")
@click.option("--tables", help="Comma-separated tables the token may read.")
@click.option("--all", "all_tables", is_flag=True, help="Grant every table.")
@click.option("--admin", is_flag=True, help="Also grant admin operations.")
def token_create(settings: Settings, name: str, tables: str | None, all_tables: bool, admin: bool) -> None:
    """Create a token and print its secret (shown once; only a hash is stored)."""
    from engine.tokens import TokenStore

    if tables and all_tables:
        fail("use --tables or --all, not both")
    granted = [t.strip() for t in (tables or "").split(",") if t.strip()]
    secret = TokenStore(settings.tokens_file).create(name, tables=granted, all_tables=all_tables, admin=admin)
    click.echo(secret)
    click.echo(
        f"token {name!r} stored (hashed) in {settings.tokens_file}; the secret above is not shown again", err=True
    )


def open_catalog(settings: Settings):
    from engine.catalog import Catalog

    return Catalog(settings.data_dir, settings.tables)


def _iso(ms: Any) -> str:
    import datetime as dt

    if not isinstance(ms, (int, float)):
        return str(ms)
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="seconds")


class progress:
    """A progress bar on a terminal (stderr); silent otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self._bar: Any = None

    def __enter__(self) -> Callable[[str], None]:
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self.advance

    def advance(self, note: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{self.label}: {note}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


if __name__ == "__main__":
    main()
