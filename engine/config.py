"""Settings: ``colonnade.toml`` overlaid with ``COLONNADE_<SECTION>_<KEY>`` environment variables.

Defaults are safe: bind to loopback, timeouts and limits on. Unknown keys and wrong types are
refused with a message naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, InvalidParameters, ResultTooLarge
from engine.location import state_path

CONFIG_ENV = "COLONNADE_CONFIG"
DEFAULT_CONFIG_NAME = "colonnade.toml"
EXTERNAL_FORMATS = ("parquet", "csv", "ndjson", "arrow")
AUTO_PREFERENCES = ("duckdb", "polars")  # the engines engine=auto may prefer below Spark's threshold


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cors_origins: list[str] = field(default_factory=list)
    # Host names served besides loopback ones ("*": any). With auth off only loopback names
    # are served by default: a DNS-rebinding page cannot reach the server under its own name.
    allowed_hosts: list[str] = field(default_factory=list)
    # GET /metrics: "admin" (an admin token when auth is on), "open", or "off".
    metrics: str = "admin"
    engine: str = "duckdb"  # the default engine: duckdb, polars, spark or auto
    auto_prefer: str = "duckdb"  # engine=auto below [spark] auto_min_bytes: duckdb, or polars (DuckDB when it refuses)
    # A request's headers must arrive within this of its first byte, its body within the second
    # after the headers; else 408 and the connection is closed (slow or stalled clients).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


@dataclass
class DataSettings:
    dir: str = "data"


@dataclass
class LimitsSettings:
    query_timeout_s: float = 30.0
    max_result_rows: int = 100_000
    max_result_bytes: int = 2 * 1024**3
    max_concurrent_queries: int = 4
    max_queued_queries: int = 64
    # Total engine memory for the whole server ("8GB", "60%"); divided between workers.
    memory_limit: str = "60%"
    # Total engine threads for the whole server; 0 means one per core. Divided between workers.
    engine_threads: int = 0
    # Total disk the engines may spill to (under <data_dir>/.colonnade/spill); divided between workers.
    max_spill_bytes: int = 16 * 1024**3
    # The worst text of this size validates in well under a second (bench/validation.py).
    max_sql_bytes: int = 64 * 1024
    max_nesting_depth: int = 64


@dataclass
class AuthSettings:
    # None: on when the server binds to a non-loopback address, off otherwise.
    enabled: bool | None = None
    tokens: str = ""  # tokens file; default <data_dir>/.colonnade/tokens.json


@dataclass
class CacheSettings:
    max_bytes: int = 256 * 1024**2
    ttl_s: float = 300.0
    # Parquet/Arrow/CSV results kept as files for HEAD and Range requests (api/results.py).
    result_store_bytes: int = 2 * 1024**3


@dataclass
class SparkSettings:
    remote: str = ""  # a Spark Connect URL, sc://host:15002; empty: no Spark engine
    # engine="auto" sends a query to Spark when the tables it reads hold at least this many
    # bytes; 0 keeps every auto query on DuckDB.
    auto_min_bytes: int = 0


@dataclass
class StorageSettings:
    """Object storage (a data directory or table URI ``s3://bucket/prefix``). Credentials come
    from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
    ``AWS_PROFILE`` and ``~/.aws``, instance roles), never from this file."""

    endpoint_url: str = ""  # an S3-compatible store, e.g. http://127.0.0.1:9000; empty: AWS S3
    region: str = ""  # empty: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    max_retries: int = 2
    # Local state of an object-store data directory: the read cache, spill, scratch and locks
    # (and the tokens file unless [auth] tokens says). Empty: ~/.cache/colonnade/<bucket>-<hash>.
    local_dir: str = ""
    cache_bytes: int = 10 * 1024**3  # the read cache of data files, for all workers of a host


@dataclass
class ExternalTable:
    name: str
    uri: str
    format: str = ""  # inferred from the extension when empty
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    data: DataSettings = field(default_factory=DataSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tables: list[ExternalTable] = field(default_factory=list)
    source: Path | None = None  # the file these settings came from, if any
    # "data.dir" → (who set it: a flag, a variable or a file, the value it set)
    origins: dict[str, tuple[str, Any]] = field(default_factory=dict)

    @property
    def data_location(self) -> str:
        """The data directory, by one rule for every command, the server and the notebook:
        ``--data`` (or ``engine.connect(dir)``) > ``COLONNADE_DATA_DIR`` > ``[data] dir`` in the
        config file (relative to that file) > ``./data``. A local path (resolved) or an
        object-store URI (``s3://bucket/prefix``)."""
        if is_object_store(self.data.dir):
            return self.data.dir.rstrip("/")
        return str(self._path("data.dir", self.data.dir))

    @property
    def data_dir(self) -> Path:
        """Where this data directory's local state lives (``.colonnade/``: tokens, locks, spill):
        the directory itself, or for an object-store one its ``[storage] local_dir``."""
        if is_object_store(self.data.dir):
            from engine.objectstore import local_dir

            return local_dir(self.data_location, self.storage)
        return self._path("data.dir", self.data.dir)

    @property
    def data_dir_origin(self) -> str:
        """Where the data directory came from, for messages: ``--data``, the variable, the file."""
        return self._origin("data.dir", self.data.dir) or "the default, ./data"

    def _origin(self, key: str, value: Any) -> str | None:
        origin, set_to = self.origins.get(key, ("", None))
        if origin and set_to != value:  # changed since loading, e.g. engine.connect(dir)
            return "the data directory given"
        return origin or None

    @property
    def tokens_file(self) -> Path:
        if self.auth.tokens:
            return self._path("auth.tokens", self.auth.tokens)
        return state_path(self.data_dir, "tokens.json")

    def _path(self, key: str, value: str) -> Path:
        path = Path(value).expanduser()
        origin = self._origin(key, value) or ""
        if not path.is_absolute() and self.source is not None and origin.endswith(f" in {self.source}"):
            path = self.source.parent / path  # a path in a config file is relative to that file
        return path.resolve()

    def auth_enabled(self) -> bool:
        if self.auth.enabled is not None:
            return self.auth.enabled
        return self.server.host not in ("127.0.0.1", "localhost", "::1")


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "data": DataSettings,
    "limits": LimitsSettings,
    "auth": AuthSettings,
    "cache": CacheSettings,
    "spark": SparkSettings,
    "storage": StorageSettings,
}

OBJECT_STORE_SCHEMES = ("s3://", "s3a://")


def is_object_store(location: str | Path) -> bool:
    """Whether ``location`` is an object-store URI (``s3://bucket/prefix``) rather than a path."""
    return isinstance(location, str) and location.lower().startswith(OBJECT_STORE_SCHEMES)


def load_settings(
    path: str | Path | None = None,
    *,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Settings from a TOML file (explicit, ``$COLONNADE_CONFIG`` or ``./colonnade.toml``),
    then environment variables, then ``overrides`` (CLI flags), each layer winning."""
    env = os.environ if environ is None else environ
    source = _config_path(path, env)
    raw: dict[str, Any] = {}
    if source is not None:
        try:
            raw = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    settings = Settings(source=source)
    for key, value in raw.items():
        if key == "tables":
            settings.tables = _external_tables(value)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of settings")
            for name, item in value.items():
                _assign(settings, key, name, item, from_env=False, origin=f"[{key}] {name} in {source}")
        else:
            raise ConfigError(f"unknown config section [{key}] (known: {', '.join(SECTIONS)}, tables)")
    for var, value in env.items():
        if var.startswith("COLONNADE_") and var != CONFIG_ENV:
            section, _, name = var[len("COLONNADE_") :].lower().partition("_")
            if section in SECTIONS:
                _assign(settings, section, name, value, from_env=True, origin=var)
    for section, values in (overrides or {}).items():
        for name, value in values.items():
            if value is not None:
                _assign(
                    settings, section, name, value, from_env=False, origin=_FLAGS.get(f"{section}.{name}", "a flag")
                )
    if settings.server.auto_prefer not in AUTO_PREFERENCES:
        raise ConfigError(f"[server] auto_prefer must be one of {', '.join(AUTO_PREFERENCES)}")
    for where, seconds in (
        ("limits.query_timeout_s", settings.limits.query_timeout_s),
        ("server.header_timeout_s", settings.server.header_timeout_s),
        ("server.body_timeout_s", settings.server.body_timeout_s),
    ):
        if seconds <= 0:
            raise ConfigError(f"config key {where} must be above 0 seconds, got {seconds!r}")
    return settings


_FLAGS = {"data.dir": "--data"}


def _config_path(path: str | Path | None, env: typing.Mapping[str, str]) -> Path | None:
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def _assign(settings: Settings, section: str, name: str, value: Any, *, from_env: bool, origin: str) -> None:
    target = getattr(settings, section)
    hints = typing.get_type_hints(type(target))
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(target))
        raise ConfigError(f"unknown config key {section}.{name} (known: {known})")
    expected = hints[name]
    if from_env:
        value = _parse_env(value, expected, f"COLONNADE_{section.upper()}_{name.upper()}")
    setattr(target, name, _check_type(value, expected, f"{section}.{name}"))
    settings.origins[f"{section}.{name}"] = (origin, getattr(target, name))


def _check_type(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    allowed = typing.get_args(expected) if origin in (typing.Union, types.UnionType) else (expected,)
    for option in allowed:
        if option is type(None) and value is None:
            return None
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):  # TOML and float() both read nan and inf
                raise ConfigError(f"config key {where} must be a finite number, got {value!r}")
            return float(value)
        if base is int and isinstance(value, bool):
            continue
        if isinstance(base, type) and isinstance(value, base):
            return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise ConfigError(f"config key {where} must be {names}, got {type(value).__name__} {value!r}")


def _parse_env(text: str, expected: Any, var: str) -> Any:
    is_union = typing.get_origin(expected) in (typing.Union, types.UnionType)
    options = [a for a in (typing.get_args(expected) if is_union else (expected,)) if a is not type(None)]
    base = typing.get_origin(options[0]) or options[0]
    try:
        if base is bool:
            lowered = text.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return lowered in ("1", "true", "yes", "on")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is list:
            return [item.strip() for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{var}={text!r} is not a valid {base.__name__}") from None
    return text


def _external_tables(value: Any) -> list[ExternalTable]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("[[tables]] must be an array of tables")
    out = []
    hints = typing.get_type_hints(ExternalTable)
    for i, entry in enumerate(value):
        unknown = set(entry) - set(hints)
        if unknown:
            raise ConfigError(f"unknown key(s) in [[tables]] #{i + 1}: {', '.join(sorted(unknown))}")
        for required in ("name", "uri"):
            if required not in entry:
                raise ConfigError(f"[[tables]] #{i + 1} needs '{required}'")
        checked = {k: _check_type(v, hints[k], f"tables[{i}].{k}") for k, v in entry.items()}
        table = ExternalTable(**checked)
        if table.format and table.format not in EXTERNAL_FORMATS:
            raise ConfigError(
                f"table {table.name}: unknown format {table.format!r} (known: {', '.join(EXTERNAL_FORMATS)})"
            )
        out.append(table)
    return out


# -- the resource budget ---------------------------------------------------------------------

# The widest row a result may carry. Encoding copies a row a few times (JSON most), so without
# a bound the server's memory per query would grow with the row width; a wider row is a 413.
MAX_ROW_BYTES = 16 * 1024**2


def row_too_wide(nbytes: int) -> ResultTooLarge:
    return ResultTooLarge(
        f"a result row is {nbytes / 1024**2:.0f} MiB; rows wider than {MAX_ROW_BYTES // 1024**2} MiB "
        "are not served (select part of the value, e.g. with left())"
    )


def total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_size(text: str, *, total: int | None = None) -> int:
    """'60%' (of ``total``, default RAM), '8GB', '512MiB', '1000000' → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%|[KMGT]i?B|B)?\s*", str(text), re.I)
    if not m:
        raise ConfigError(f"{text!r} is not a size (examples: 60%, 8GB, 512MiB)")
    number, unit = float(m.group(1)), (m.group(2) or "B").upper()
    if unit == "%":
        return int((total if total is not None else total_memory_bytes()) * number / 100)
    powers = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}
    base = 1024 if "I" in unit else 1000
    return int(number * base ** powers[unit[0]])


def engine_resources(settings: Settings) -> tuple[int, int]:
    """(threads, memory bytes) for the engines of ONE worker process: the configured totals
    divided between workers, so N workers never oversubscribe the machine."""
    workers = max(1, settings.server.workers)
    threads = settings.limits.engine_threads or os.cpu_count() or 2
    memory = parse_size(settings.limits.memory_limit)
    return max(1, threads // workers), max(64 * 1024**2, memory // workers)


def check_timeout(value: Any, name: str = "timeout_s") -> float:
    """A timeout a client gave: a finite number of seconds above zero. ``nan`` would compare
    false with everything and so switch the timeout off; ``inf`` would do so openly."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidParameters(f"{name} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameters(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidParameters(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return seconds
