"""The README's screenshots come from a script; running it here keeps it working."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.console.conftest import VIEWPORT
from tests.console.screenshots import DOCS, NAMES, capture


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_screenshot_script_produces_the_readme_images(browser, console_server, tmp_path: Path) -> None:
    paths = capture(browser, console_server.url, tmp_path)
    assert [p.name for p in paths] == list(NAMES)
    for path in paths:
        assert png_size(path) == (VIEWPORT["width"], VIEWPORT["height"])
        assert path.stat().st_size > 30_000, path  # a rendered console, not a blank page
    readme = (DOCS.parent / "README.md").read_text()
    for name in NAMES:
        assert (DOCS / name).exists() and f"docs/{name}" in readme, name
