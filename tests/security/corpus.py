"""The hostile SQL corpus (tests/fixtures/hostile.sql): blocks, expected codes, placeholders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

HOSTILE = Path(__file__).parents[1] / "fixtures" / "hostile.sql"
OK = "ok"  # a control: must run and return rows
_EXPECT = re.compile(r"^-- expect: (\w+)[ \t]*$", re.M)
_REPEAT = re.compile(r"\{\{(\d+)\*(.*?)\}\}")
_NAME = re.compile(r"\{\{([A-Z_]+)\}\}")


@dataclass(frozen=True)
class Block:
    index: int
    template: str
    expect: str

    def sql(self, paths: Mapping[str, str]) -> str:
        """The statement with its placeholders filled in."""
        text = _REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), self.template)
        return _NAME.sub(lambda m: paths[m.group(1)], text)

    @property
    def label(self) -> str:
        lines = [line for line in self.template.strip().splitlines() if line.strip() and not line.startswith("-- ")]
        last = (lines or [""])[-1]
        return f"{self.index:03d}-{last[:40]}"


def blocks() -> list[Block]:
    out = []
    for i, text in enumerate(re.split(r"^-- next[ \t]*$", HOSTILE.read_text(), flags=re.M)):
        expected = _EXPECT.findall(text)
        assert len(expected) == 1, f"block {i} of {HOSTILE.name} needs exactly one '-- expect: <code>' line"
        out.append(Block(i, text, expected[0]))
    return out


def params(*, refusals_only: bool = False) -> list[object]:
    return [pytest.param(b, id=b.label) for b in blocks() if not (refusals_only and b.expect == OK)]
