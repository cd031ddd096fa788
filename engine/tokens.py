"""Bearer tokens: created once by the CLI (the secret is printed, never stored), kept hashed.

Each token grants a set of tables (or all) and optionally admin. Admin is an operations grant
(watching and cancelling queries, metrics), orthogonal to data: an ``--admin`` token with no
tables reads no table. Secrets are 256-bit random, so a plain SHA-256 is a sound hash (no salt
or slow KDF needed: nothing to brute-force), and every lookup compares against every stored
hash in constant time.

Every change is a read-modify-write of the whole file under an exclusive ``flock`` on a
sidecar lock file, written to a temporary file and renamed over the old one: concurrent
``token create`` commands all land, and a reader (the server) sees the old file or the new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.catalog import check_table_name
from engine.errors import ConfigError, Forbidden, InvalidRequest

PREFIX = "col_"
ALL_TABLES = "*"


@dataclass(frozen=True)
class Token:
    name: str
    hash: str
    tables: tuple[str, ...] = ()  # ("*",) grants every table
    admin: bool = False
    created: float = field(default_factory=time.time)

    @property
    def all_tables(self) -> bool:
        return ALL_TABLES in self.tables

    def may_read(self, table: str) -> bool:
        return self.all_tables or table.lower() in {t.lower() for t in self.tables}

    def check_tables(self, tables: Iterable[str]) -> None:
        """Refuse unless every table is granted; the error names all the tables tried (the
        query log records them) and the ones denied."""
        tried = sorted(set(tables))
        denied = [t for t in tried if not self.may_read(t)]
        if denied:
            raise Forbidden(f"token {self.name!r} may not read: {', '.join(denied)}", tables=tried)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The tokens file, re-read when it changes on disk (a token created while serving works)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tokens: list[Token] = []
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def _load(self) -> list[Token]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # every write is a new file (rename)
        with self._lock:
            if stamp != self._stamp:
                try:
                    raw = json.loads(self.path.read_text())
                    self._tokens = [Token(**{**t, "tables": tuple(t["tables"])}) for t in raw["tokens"]]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"tokens file {self.path} is damaged: {exc}") from None
                self._stamp = stamp
            return self._tokens

    def tokens(self) -> list[Token]:
        return list(self._load())

    def verify(self, secret: str) -> Token | None:
        """The token whose secret this is; every stored hash is compared, in constant time."""
        digest = hash_secret(secret)
        found = None
        for token in self._load():
            if hmac.compare_digest(token.hash, digest):
                found = token
        return found

    def create(self, name: str, *, tables: Iterable[str] = (), all_tables: bool = False, admin: bool = False) -> str:
        """Store a new token and return its secret (shown once, never stored). A token grants
        ``tables`` (or every table), admin operations, or both; it must grant something."""
        if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
            raise InvalidRequest(f"token name {name!r} must be letters, digits, - or _")
        granted = (ALL_TABLES,) if all_tables else tuple(dict.fromkeys(check_table_name(t) for t in tables))
        if not granted and not admin:
            raise InvalidRequest("a token needs --tables T1,T2, --all or --admin")
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._locked() as tokens:
            if any(t.name == name for t in tokens):
                raise InvalidRequest(f"a token named {name!r} exists already (revoke it first)")
            self._write([*tokens, Token(name, hash_secret(secret), granted, admin)])
        return secret

    def revoke(self, name: str) -> Token:
        """Delete the token named ``name``; its secret stops working at once."""
        with self._locked() as tokens:
            kept = [t for t in tokens if t.name != name]
            if len(kept) == len(tokens):
                raise InvalidRequest(f"no token named {name!r} in {self.path}")
            self._write(kept)
        return next(t for t in tokens if t.name == name)

    @contextmanager
    def _locked(self) -> Iterator[list[Token]]:
        """The stored tokens, read under an exclusive lock held until the block's write is done."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                self._stamp = None  # read the file itself: another process may just have replaced it
            yield self._load()
        finally:
            os.close(fd)  # releases the lock

    def _write(self, tokens: list[Token]) -> None:
        body = json.dumps({"tokens": [{**asdict(t), "tables": list(t.tables)} for t in tokens]}, indent=2)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
            with os.fdopen(fd, "w") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # atomic: a reader sees the old file or the new one
        finally:
            tmp.unlink(missing_ok=True)


def check_admin(token: Token | None) -> None:
    if token is not None and not token.admin:
        raise Forbidden(f"token {token.name!r} is not an admin token")
