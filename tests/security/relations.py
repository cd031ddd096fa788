"""A data directory with one granted table and tables a one-table token must never reach, each
value of them carrying a marker, and the checks that prove they were not reached: no marker in
any answer or error, no read of their files or of the token store (atime canaries), no internal
name or path in what a client sees.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import engine
from engine.catalog import Catalog
from engine.config import ExternalTable, load_settings
from engine.ingest import ingest
from engine.tokens import TokenStore

GRANTED = "granted"
SECRETS = ("keys", "vault")  # "keys": U+212A KELVIN SIGN + "eys" folds to it in Python
EXTERNAL = "outside"  # an external table, also not granted


@dataclass
class Vault:
    """The data directory, its secrets and the canaries on every file a query must not read."""

    root: Path
    marker: str = field(default_factory=lambda: f"SECRET-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        self.external_dir = self.root / "external"
        catalog = Catalog(self.data_dir, create=True)
        rows = 12
        ingest(catalog, pa.table({"id": range(rows), "label": [f"granted row {i}" for i in range(rows)]}), GRANTED)
        for name in SECRETS:
            secret = pa.table({"id": range(100, 107), "label": [f"{self.marker} {name} {i}" for i in range(7)]})
            ingest(catalog, secret, name)
        self.external_dir.mkdir()
        pq.write_table(
            pa.table({"id": [1], "label": [f"{self.marker} external"]}), self.external_dir / "part-0.parquet"
        )
        store = TokenStore(self.data_dir / ".colonnade" / "tokens.json")
        self.admin_secret = store.create("admin", all_tables=True, admin=True)
        self.reader_secret = store.create("reader", tables=[GRANTED])
        self.token = store.verify(self.reader_secret)
        assert self.token is not None
        self.tokens_file = store.path
        self.canaries = [Path(p) for name in SECRETS for p in (self.data_dir / name).rglob("*") if p.is_file()] + [
            self.external_dir / "part-0.parquet",
            self.tokens_file,
        ]
        self.arm()

    def database(self) -> engine.Database:
        settings = load_settings(environ={})
        settings.tables = [ExternalTable(EXTERNAL, str(self.external_dir / "*.parquet"))]
        return engine.Database(self.data_dir, settings=settings)

    def arm(self) -> None:
        """Put each canary's atime behind its mtime: the next read moves it (relatime)."""
        self._armed = {}
        for path in self.canaries:
            st = os.stat(path)
            os.utime(path, ns=(st.st_mtime_ns - 86_400 * 10**9, st.st_mtime_ns))
            self._armed[path] = os.stat(path).st_atime_ns

    def files_read(self) -> list[str]:
        return [str(p) for p, atime in self._armed.items() if os.stat(p).st_atime_ns != atime]

    def secrets_in(self, text: str, sql: str = "") -> list[str]:
        """What ``text`` (an answer or an error to ``sql``) shows that it must not. A path the
        query itself holds may be echoed back; no other path under the vault may appear."""
        found = []
        if self.marker in text:
            found.append("a secret table's rows")
        if self.token.hash in text or self.reader_secret in text or self.admin_secret in text:
            found.append("the token store")
        paths = re.findall(re.escape(str(self.root)) + r"[^\s'\"\]]*", text)
        if [p for p in paths if p not in sql]:
            found.append("a server path")
        return found
