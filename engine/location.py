"""Where one managed table lives: a local directory, or a prefix in object storage.

Everything the write side does to a table's files outside delta-rs goes through here (is
there a log, what is its latest commit, is a written file whole, delete files), so ``storage``
and the ingest job say the same thing for a directory and for ``s3://bucket/prefix/table``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import DataDirError, TableNotFound

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from engine.objectstore import ObjectStore

DELTA_LOG = "_delta_log"
STATE_DIR = ".colonnade"  # a data directory's own state: tokens, locks, spill, staging, cache


def state_path(data_dir: Path, *parts: str) -> Path:
    """``<data_dir>/.colonnade/<parts>``: never a table (not an identifier), never read by engines."""
    return data_dir.joinpath(STATE_DIR, *parts)


COMMIT_FILE = re.compile(r"(\d{20})\.json\Z")


def commit_name(version: int) -> str:
    return f"{version:020d}.json"


@dataclass(frozen=True)
class TableLocation:
    name: str
    uri: str  # a local directory, or s3://bucket/prefix/name
    store: ObjectStore | None = None

    @classmethod
    def of(cls, target: Path | str | TableLocation) -> TableLocation:
        """A location, from a location or a local directory."""
        if isinstance(target, TableLocation):
            return target
        return cls(Path(target).name, str(target))

    @property
    def remote(self) -> bool:
        return self.store is not None

    @property
    def path(self) -> Path:
        """The local directory (local tables only)."""
        assert self.store is None, "an object-store table has no local directory"
        return Path(self.uri)

    @property
    def options(self) -> dict[str, str] | None:
        """delta-rs ``storage_options``."""
        return self.store.delta_options if self.store is not None else None

    def file_uri(self, relative: str) -> str:
        return f"{self.uri}/{relative}" if self.store is not None else str(Path(self.uri) / relative)

    def delta_table(self, version: int | None = None) -> DeltaTable:
        from deltalake import DeltaTable

        return DeltaTable(self.uri, version=version, storage_options=self.options)

    def has_log(self) -> bool:
        if self.store is None:
            return (Path(self.uri) / DELTA_LOG).is_dir()
        from engine.objectstore import ObjectURI

        if self.has_commit(0):  # one HEAD; a log whose first commits were cleaned up is listed
            return True
        return bool(self.store.list_files(ObjectURI.parse(self.uri).child(DELTA_LOG), recursive=False))

    def latest_version(self) -> int:
        """The latest commit, from a listing of the log (no JSON read)."""
        if self.store is None:
            try:
                names = os.listdir(Path(self.uri) / DELTA_LOG)
            except FileNotFoundError:
                raise TableNotFound(f"table {self.name!r} does not exist", table=self.name) from None
        else:
            from engine.objectstore import ObjectURI

            log = ObjectURI.parse(self.uri).child(DELTA_LOG)
            names = [uri.rsplit("/", 1)[1] for uri, _, _ in self.store.list_files(log, recursive=False)]
            if not names:
                raise TableNotFound(f"table {self.name!r} does not exist", table=self.name)
        versions = [int(m.group(1)) for n in names if (m := COMMIT_FILE.match(n))]
        if not versions:
            raise DataDirError(f"table {self.name!r} has no commits in {self.uri}/{DELTA_LOG}")
        return max(versions)

    def has_commit(self, version: int) -> bool:
        """Whether commit ``version`` exists: one stat, or one HEAD request."""
        relative = f"{DELTA_LOG}/{commit_name(version)}"
        if self.store is None:
            return os.path.exists(self.file_uri(relative))
        return self.store.exists(self.file_uri(relative))

    def file_size(self, relative: str) -> int | None:
        """The size of a file of the table, or None when it is not there."""
        if self.store is None:
            try:
                return (Path(self.uri) / relative).stat().st_size
            except FileNotFoundError:
                return None
        info = self.store.info(self.file_uri(relative))
        return None if info is None else info[0]

    def exists(self, uri: str) -> bool:
        """Whether a file named by a Delta file URI (``file://…``, a path or ``s3://…``) is there."""
        if self.store is None:
            return os.path.exists(uri[len("file://") :] if uri.startswith("file://") else uri)
        return self.store.exists(uri)
