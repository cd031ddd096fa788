"""Bearer tokens: created once by the CLI (the secret is printed, never stored), kept hashed.

Each token grants a set of tables (or all) and optionally admin. Secrets are 256-bit random,
so a plain SHA-256 is a sound hash (no salt or slow KDF needed: nothing to brute-force), and
every lookup compares against every stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable
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
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _load(self) -> list[Token]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
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
        """Store a new token and return its secret (shown once, never stored)."""
        if not name or not name.replace("-", "_").isidentifier():
            raise InvalidRequest(f"token name {name!r} must be letters, digits, - or _")
        granted = (ALL_TABLES,) if all_tables else tuple(check_table_name(t) for t in tables)
        if not granted:
            raise InvalidRequest("a token needs --tables T1,T2 or --all")
        tokens = self._load()
        if any(t.name == name for t in tokens):
            raise InvalidRequest(f"a token named {name!r} exists already")
        secret = PREFIX + secrets.token_urlsafe(32)
        entry = Token(name, hash_secret(secret), granted, admin)
        self._write([*tokens, entry])
        return secret

    def _write(self, tokens: list[Token]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"tokens": [{**asdict(t), "tables": list(t.tables)} for t in tokens]}, indent=2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)  # atomic: a reader sees the old file or the new one


def check_admin(token: Token | None) -> None:
    if token is not None and not token.admin:
        raise Forbidden(f"token {token.name!r} is not an admin token")
