"""Tokens through the real CLI: concurrent creates all land, list and revoke, what a grant may
name, and every bad input refused in one line with the token store unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine.tokens import TokenStore

COLONNADE = str(Path(sys.executable).parent / "colonnade")


def cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    return subprocess.run([COLONNADE, *args, "--data", str(data)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    with engine.Database(tmp_path / "data", create=True) as db:
        for name in ("orders", "Lineitem"):
            db.ingest(pa.table({"id": [1]}), table=name)
    return tmp_path / "data"


def store_bytes(data: Path) -> bytes | None:
    path = data / ".colonnade" / "tokens.json"
    return path.read_bytes() if path.exists() else None


def test_concurrent_creates_all_land(data: Path) -> None:
    """8 processes create a token each at the same moment: 8 tokens stored, each secret works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONNADE_")}
    procs = [
        subprocess.Popen(
            [COLONNADE, "token", "create", "--name", f"t{i}", "--tables", "orders", "--data", str(data)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    secrets = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    store = TokenStore(data / ".colonnade" / "tokens.json")
    assert sorted(t.name for t in store.tokens()) == [f"t{i}" for i in range(8)]
    assert [store.verify(s).name for s in secrets] == [f"t{i}" for i in range(8)]  # type: ignore[union-attr]
    assert oct((data / ".colonnade" / "tokens.json").stat().st_mode & 0o777) == "0o600"
    assert not list((data / ".colonnade").glob("*.tmp"))


def test_list_and_revoke(data: Path) -> None:
    created = {}
    for args in (
        ("--name", "dash", "--tables", "ORDERS,lineitem"),
        ("--name", "ops", "--admin"),
        ("--name", "all", "--all"),
    ):
        done = cli("token", "create", *args, data=data)
        assert done.returncode == 0, done.stderr
        created[args[1]] = done.stdout.strip()
    listed = [json.loads(line) for line in cli("token", "list", "--json", data=data).stdout.splitlines()]
    assert [(t["name"], t["tables"], t["admin"]) for t in listed] == [
        ("dash", ["orders", "Lineitem"], False),  # spelled as the catalog spells them
        ("ops", [], True),  # admin alone: operations, no table
        ("all", ["*"], False),
    ]
    assert all(t["created"].startswith("20") for t in listed)
    text = cli("token", "list", data=data).stdout
    assert "dash\torders,Lineitem\t" in text and all(s not in text for s in created.values())
    store = TokenStore(data / ".colonnade" / "tokens.json")
    ops = store.verify(created["ops"])
    assert ops is not None and ops.admin and not ops.may_read("orders")
    done = cli("token", "revoke", "dash", data=data)
    assert done.returncode == 0 and "revoked" in done.stdout
    assert store.verify(created["dash"]) is None and store.verify(created["all"]) is not None  # seen at once
    assert [t.name for t in store.tokens()] == ["ops", "all"]


BAD = [
    (("token", "create", "--name", "x", "--tables", "orders,nosuch"), "'nosuch' does not exist"),
    (("token", "create", "--name", "x", "--tables", "bad-name"), "does not exist"),
    (("token", "create", "--name", "x"), "--tables T1,T2, --all or --admin"),
    (("token", "create", "--name", "x", "--tables", ","), "names no table"),
    (("token", "create", "--name", "x", "--tables", "orders", "--all"), "not both"),
    (("token", "create", "--name", "bad name!", "--all"), "must be letters"),
    (("token", "create", "--name", "first", "--all"), "exists already"),
    (("token", "revoke", "nosuch"), "no token named 'nosuch'"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_token_commands_change_nothing(data: Path, args: tuple[str, ...], says: str) -> None:
    assert cli("token", "create", "--name", "first", "--all", data=data).returncode == 0
    before = store_bytes(data)
    done = cli(*args, data=data)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert says in done.stderr and done.stdout == ""
    assert store_bytes(data) == before


def test_list_of_an_empty_store(data: Path) -> None:
    done = cli("token", "list", "--json", data=data)
    assert done.returncode == 0 and done.stdout == "" and "0 token(s)" not in done.stderr
    assert "0 token(s)" in cli("token", "list", data=data).stderr
