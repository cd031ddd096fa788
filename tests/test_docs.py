"""The README is a tested contract (datasette's test_docs.py): every configuration key, route,
error code and module appears in it, and its layout section names only what exists. (Every
CLI command and option: tests/test_cli.py.)"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from engine.config import SECTIONS, ExternalTable
from engine.errors import ERRORS_BY_CODE

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


CONFIG = section("Configuration")


@pytest.mark.parametrize(
    ("name", "key"),
    [(name, field.name) for name, cls in SECTIONS.items() for field in dataclasses.fields(cls)]
    + [("tables", field.name) for field in dataclasses.fields(ExternalTable)],
)
def test_every_config_key_is_documented(name: str, key: str) -> None:
    header = "[[tables]]" if name == "tables" else f"[{name}]"
    block = re.split(rf"^{re.escape(header)}[ \t]*(?:#.*)?$", CONFIG, maxsplit=1, flags=re.M)
    assert len(block) == 2, f"{header} is missing from the README's configuration"
    body = block[1].split("\n[", 1)[0]
    assert re.search(rf"^#?\s*{key}\s*=", body, re.M), f"{header} {key} is missing from the README"


def routes() -> list[tuple[str, str]]:
    from api.app import create_app

    app = create_app()
    found = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ())):
            if method in ("OPTIONS", "HEAD") or route.path.startswith(("/schema", "/static")):
                continue
            found.append((method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)))
    return found


@pytest.mark.parametrize(("method", "path"), routes())
def test_every_route_is_documented(method: str, path: str) -> None:
    documented = re.sub(r"\{\w+\}", "{}", path)
    table = re.sub(r"\{\w+\}", "{}", section("For services and dashboards: the HTTP API"))
    assert f"`{method} {documented}" in table, f"{method} {path} is missing from the README's route table"


@pytest.mark.parametrize("code", sorted(c for c in ERRORS_BY_CODE if c != "error"))
def test_every_error_code_is_documented(code: str) -> None:
    assert f"`{code}`" in README, f"error code {code} is not in the README"


def layout() -> list[str]:
    block = section("Layout").split("```")[1]
    names = []
    parent = ""
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entries = re.findall(r"([\w./]+/|[\w.]+\.py)", line.strip().split("  ", 1)[0])
        for entry in entries:
            if indent == 0:
                parent = entry if entry.endswith("/") else ""
                names.append(entry)
            else:
                names.append(parent + entry)
    return names


def test_the_layout_names_what_exists() -> None:
    missing = [name for name in layout() if not (ROOT / name).exists()]
    assert not missing, f"the README's layout names what does not exist: {missing}"


@pytest.mark.parametrize("package", ["engine", "api"])
def test_the_layout_names_every_module(package: str) -> None:
    named = set(layout())
    modules = sorted(
        str(p.relative_to(ROOT)).replace("/__init__.py", "/")
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts and not (p.name == "__init__.py" and p.parent.name == package)
    )
    covered = [
        m
        for m in modules
        if m in named or any(m.startswith(n) for n in named if n.endswith("/") and n != f"{package}/")
    ]
    assert sorted(set(modules) - set(covered)) == []
