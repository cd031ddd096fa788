"""The ``colonnade`` command line. Exit codes: 0 ok, 1 user error (one line on stderr), 2 usage,
141 (128 + SIGPIPE) when the reader of its output went away (``colonnade history t | head -1``)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.config import Settings, load_settings
from engine.errors import ColonnadeError, TableNotFound
from engine.location import STATE_DIR
from engine.storage import WriteMode

if TYPE_CHECKING:
    from engine.catalog import Catalog
    from engine.database import Database

OUTPUT_FORMATS = ("table", "csv", "json", "ndjson", "parquet", "arrow")
ENGINE_CHOICES = ("duckdb", "polars", "spark", "auto")
SIGPIPE_EXIT = 128 + 13  # the shell's status for a process ended by SIGPIPE


def fail(message: str, code: str | None = None) -> None:
    """One line on stderr, whatever the engine said, ending with the error's stable code."""
    click.echo("error: " + " ".join(message.split()) + (f" [{code}]" if code else ""), err=True)
    sys.exit(1)


def pipe_closed() -> None:
    """The reader of stdout went away: stop quietly, as ``cat`` does. Point stdout at /dev/null
    so that the interpreter's last flush does not print the broken pipe either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(SIGPIPE_EXIT)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--data`` and ``--config`` on every command; errors become one line and exit 1."""

    @click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False),
        help="Data directory (else $COLONNADE_DATA_DIR, else [data] dir in the config, else ./data).",
    )
    @click.option("--config", "config", type=click.Path(dir_okay=False), help="Config file (default ./colonnade.toml).")
    @functools.wraps(fn)
    def wrapper(*args: Any, data_dir: str | None, config: str | None, **kwargs: Any) -> Any:
        settings = None
        try:
            settings = load_settings(config, overrides={"data": {"dir": data_dir}})
            return fn(settings, *args, **kwargs)
        except BrokenPipeError:
            pipe_closed()
        except TableNotFound as exc:  # say where it was looked for (the API must not: a server path)
            fail(f"{exc.detail} in {settings.data_location}" if settings is not None else exc.detail, exc.code)
        except ColonnadeError as exc:
            fail(exc.detail, exc.code)
        except (OSError, ValueError) as exc:
            fail(str(exc))

    return wrapper


def existing_data_dir(settings: Settings) -> str:
    """The data directory a command reads, refused in one line naming where it came from (an
    object-store one is checked when it is opened)."""
    from engine.config import is_object_store
    from engine.errors import DataDirError

    if is_object_store(settings.data.dir):
        return settings.data_location
    path = settings.data_dir
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise DataDirError(
            f"data directory {path} {what} (set by {settings.data_dir_origin}); "
            "pass --data DIR or set COLONNADE_DATA_DIR"
        )
    return str(path)


def open_db(settings: Settings) -> Database:
    from engine.database import Database

    existing_data_dir(settings)
    return Database(settings=settings)


def note(text: str) -> None:
    """A line for the person at the terminal, on stderr: stdout stays the command's data."""
    click.echo(text, err=True)


def emit_json_lines(records: Iterable[dict[str, Any]]) -> None:
    for record in records:
        click.echo(json.dumps(record, default=str, ensure_ascii=False))


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
    data = existing_data_dir(settings)
    open_catalog(settings)  # a missing bucket or refused credentials: one line, before "serving"
    note(f"serving {data} (set by {settings.data_dir_origin}) on http://{settings.server.host}:{settings.server.port}")
    run(settings)


@main.command()
@common
@click.option("--scale", type=float, default=0.1, show_default=True, help="TPC-H scale factor.")
def demo(settings: Settings, scale: float) -> None:
    """Generate the TPC-H demo data set as managed Delta tables."""
    from engine.demo import TPCH_TABLES, create_demo

    with progress(len(TPCH_TABLES), "generating TPC-H") as advance:
        summaries = create_demo(
            settings.data_location,
            scale,
            on_table=lambda s: advance(f"{s.table} ({s.rows:,} rows)"),
            storage=settings.storage,
        )
    rows = sum(s.rows for s in summaries)
    click.echo(f"demo data: {len(summaries)} tables, {rows:,} rows in {settings.data_location}", err=True)


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
    mode: WriteMode,
    schema_evolution: str,
    on_error: str,
    as_json: bool,
) -> None:
    """Ingest files (CSV, NDJSON, Parquet, Arrow IPC; '-' for stdin) into a managed table, as one commit."""
    from engine.catalog import Catalog
    from engine.config import engine_resources, is_object_store
    from engine.ingest import ingest as run_ingest

    created = not is_object_store(settings.data.dir) and not settings.data_dir.exists()
    catalog = Catalog.from_settings(settings, create=True)
    partitions = [c.strip() for c in partition_by.split(",") if c.strip()] if partition_by else None
    threads, memory = engine_resources(settings)
    try:
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
    except BaseException:
        if created:
            _remove_unused(catalog.data_dir)
        raise
    if created:  # an ingest that starts a data directory says so: it is not the one the server reads
        note(f"created data directory {catalog.data_dir} (set by {settings.data_dir_origin})")
    record = {**summary.to_dict(), "data_dir": catalog.location}
    click.echo(json.dumps(record) if as_json else f"{summary} in {catalog.location}")


def _remove_unused(data_dir: Path) -> None:
    """A data directory this failed ingest created holds only Colonnade's scratch state: remove
    it, so that a failure leaves nothing behind."""
    import shutil

    if data_dir.is_dir() and {p.name for p in data_dir.iterdir()} <= {STATE_DIR}:
        shutil.rmtree(data_dir, ignore_errors=True)


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
    # A buffered writer of our own on stdout: with PYTHONUNBUFFERED, sys.stdout.buffer is a raw
    # file whose write() may write part of a chunk to a pipe whose reader left, and say nothing.
    out = open(output or sys.stdout.fileno(), "wb", closefd=bool(output))  # noqa: SIM115 - closed below
    try:
        if fmt == "table":
            out.write(render_table(result.arrow()).encode() + b"\n")
        else:
            for chunk in encode(fmt, result.schema, result.reader(), elapsed_ms=lambda: result.elapsed_ms):
                out.write(chunk)
            if fmt == "json":
                out.write(b"\n")
    finally:
        out.close()  # flushes; on stdout, closes our writer only
    db.close()


def render_table(table: Any) -> str:
    import polars as pl

    frame = pl.from_arrow(table)
    with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame)


@main.command()
@common
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per table.")
def tables(settings: Settings, as_json: bool) -> None:
    """List tables: name, kind, version, rows."""
    db = open_db(settings)
    snaps = [db.table(name) for name in db.tables()]
    if as_json:
        emit_json_lines(
            {
                "name": s.name,
                "kind": s.kind,
                "version": s.version,
                "row_count": s.row_count,
                "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in s.schema],
            }
            for s in snaps
        )
        return
    for snap in snaps:
        rows = "" if snap.row_count is None else f"{snap.row_count:,} rows"
        version = "" if snap.version is None else f"v{snap.version}"
        click.echo(f"{snap.name}\t{snap.kind}\t{version}\t{rows}")
    note(f"{len(snaps)} table(s) in {settings.data_location}")


@main.command()
@common
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per column.")
def schema(settings: Settings, name: str, as_json: bool) -> None:
    """Show a table's columns and types."""
    snap = open_db(settings).table(name)
    columns = [
        {"name": f.name, "type": str(f.type), "nullable": f.nullable, "partition": f.name in snap.partitions}
        for f in snap.schema
    ]
    if as_json:
        emit_json_lines(columns)
        return
    for c in columns:
        part = "\t(partition)" if c["partition"] else ""
        click.echo(f"{c['name']}\t{c['type']}{'' if c['nullable'] else ' not null'}{part}")
    note(f"{snap.name} in {settings.data_location}: {len(columns)} column(s), version {snap.version}")


@main.command()
@common
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per version.")
def history(settings: Settings, name: str, as_json: bool) -> None:
    """Show the versions of a managed table: version, time, operation, rows added."""
    from engine.storage import history as table_history

    entries = table_history(open_catalog(settings), name)
    if as_json:
        emit_json_lines(entries)
        return
    for entry in entries:
        when = _iso(entry["timestamp"])
        rows = "" if entry["rows_added"] is None else f"rows_added={entry['rows_added']}"
        click.echo(f"v{entry['version']}\t{when}\t{entry['operation']}\t{rows}")
    note(f"{name} in {settings.data_location}: {len(entries)} version(s)")


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
    click.echo(
        f"{name}: {out['files_removed']} file(s) compacted into {out['files_added']} → version {out['version']} "
        f"in {settings.data_location}"
    )


@main.command()
@common
@click.argument("name")
@click.option(
    "--retain-hours",
    type=float,
    default=168.0,
    show_default=True,
    help="Keep the files the versions of the last H hours need (below 168 only with --force).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted.")
@click.option("--force", is_flag=True, help="Allow --retain-hours below 168 (older versions lose their files).")
def vacuum(settings: Settings, name: str, retain_hours: float, dry_run: bool, force: bool) -> None:
    """Delete files no retained version needs (and leftovers of crashed ingests, never those of a
    running one)."""
    from engine.storage import vacuum as vacuum_table

    done = vacuum_table(open_catalog(settings), name, retain_hours, dry_run=dry_run, force=force)
    for f in done.files if dry_run else ():
        click.echo(f)
    kept = "; a writer was running, so files no version names were kept" if done.writers else ""
    summary = (
        f"{name}: {len(done.files)} file(s) {'would be ' if dry_run else ''}deleted in {settings.data_location}{kept}"
    )
    click.echo(summary, err=dry_run)


@main.command()
@common
@click.argument("name")
@click.option("--to-version", type=int, required=True, help="The version to restore.")
def rollback(settings: Settings, name: str, to_version: int) -> None:
    """Restore an earlier version as a new commit (history is kept)."""
    from engine.storage import rollback as rollback_table

    version = rollback_table(open_catalog(settings), name, to_version)
    click.echo(f"{name}: restored version {to_version} → version {version} in {settings.data_location}")


@main.group()
def token() -> None:
    """Manage API bearer tokens."""


@token.command("create")
@common
@click.option("--name", required=True, help="A name for the token (shown in the query log).")
@click.option("--tables", help="Comma-separated tables the token may read (they must exist).")
@click.option("--all", "all_tables", is_flag=True, help="Grant every table, present and future.")
@click.option("--admin", is_flag=True, help="Grant admin operations (alone: no table).")
def token_create(settings: Settings, name: str, tables: str | None, all_tables: bool, admin: bool) -> None:
    """Create a token and print its secret (shown once; only a hash is stored)."""
    from engine.tokens import TokenStore

    if tables and all_tables:
        fail("use --tables or --all, not both")
    granted = [t.strip() for t in (tables or "").split(",") if t.strip()]
    if tables is not None and not granted:
        fail("--tables names no table")
    if granted:  # a grant names tables that exist, spelled as the catalog spells them
        catalog = open_catalog(settings)
        granted = [catalog.resolve(t) for t in granted]
    store = TokenStore(settings.tokens_file)
    secret = store.create(name, tables=granted, all_tables=all_tables, admin=admin)
    click.echo(secret)
    note(f"token {name!r} stored (hashed) in {store.path}; the secret above is not shown again")


@token.command("list")
@common
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per token.")
def token_list(settings: Settings, as_json: bool) -> None:
    """List tokens: name, tables, admin, created (never a secret or its hash)."""
    from engine.tokens import TokenStore

    store = TokenStore(settings.tokens_file)
    tokens: list[dict[str, Any]] = [
        {"name": t.name, "tables": list(t.tables), "admin": t.admin, "created": _iso(t.created * 1000)}
        for t in store.tokens()
    ]
    if as_json:
        emit_json_lines(tokens)
        return
    for t in tokens:
        click.echo(f"{t['name']}\t{','.join(t['tables']) or '-'}\t{'admin' if t['admin'] else ''}\t{t['created']}")
    note(f"{len(tokens)} token(s) in {store.path}")


@token.command("revoke")
@common
@click.argument("name")
def token_revoke(settings: Settings, name: str) -> None:
    """Delete a token: its secret stops working at once (a running server re-reads the file)."""
    from engine.tokens import TokenStore

    store = TokenStore(settings.tokens_file)
    store.revoke(name)
    click.echo(f"token {name!r} revoked in {store.path}")


def open_catalog(settings: Settings) -> Catalog:
    from engine.catalog import Catalog

    existing_data_dir(settings)
    return Catalog.from_settings(settings)


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
