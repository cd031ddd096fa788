"""Proof that hostile SQL neither read nor wrote anything outside the data dir.

A canary file outside the data dir holds a secret token; its access time is set behind its
modification time, so any read moves it (relatime moves atime on the first read after a
write). Nothing may show the token, move the atime, change the file, or create anything in
the directories hostile SQL tries to write to.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PASSWD_MARKER = "root:x:0:0"  # what /etc/passwd would leak


def disk_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory below ``root`` with its size and mtime."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            state[os.path.relpath(path, root)] = (st.st_size if name in filenames else 0, st.st_mtime_ns)
    return state


@dataclass
class Sandbox:
    root: Path
    data_dir: Path
    token: str = field(default_factory=lambda: f"colonnade-canary-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.canary_dir = self.root / "canary"
        self.canary = self.canary_dir / "secret.csv"
        self.out = self.root / "out"  # where hostile SQL tries to write
        self.cwd = self.root / "cwd"  # the working directory: relative paths land here
        for d in (self.canary_dir, self.out, self.cwd):
            d.mkdir(parents=True, exist_ok=True)
        self.canary.write_text(f"secret\n{self.token}\n")
        self.reads_visible = self._arm_and_probe()

    def paths(self) -> dict[str, str]:
        return {
            "CANARY": str(self.canary),
            "CANARY_DIR": str(self.canary_dir),
            "OUT": str(self.out),
            "DATA": str(self.data_dir),
        }

    def _arm(self) -> None:
        st = os.stat(self.canary)
        os.utime(self.canary, ns=(st.st_mtime_ns - 86_400 * 10**9, st.st_mtime_ns))
        self._armed = os.stat(self.canary)

    def _arm_and_probe(self) -> bool:
        """Arm the canary and check that this filesystem shows a read in the atime."""
        self._arm()
        self.canary.read_bytes()
        visible = os.stat(self.canary).st_atime_ns != self._armed.st_atime_ns
        self._arm()
        return visible

    def problems(self) -> list[str]:
        """What hostile SQL changed; empty when nothing."""
        found = []
        st = os.stat(self.canary)
        if self.reads_visible and st.st_atime_ns != self._armed.st_atime_ns:
            found.append(f"the canary {self.canary} was read")
        if (st.st_mtime_ns, st.st_size) != (self._armed.st_mtime_ns, self._armed.st_size):
            found.append(f"the canary {self.canary} was modified")
        if self.token not in self.canary.read_text():
            found.append("the canary lost its token")
        self._arm()  # read_text() above moved the atime
        for d in (self.canary_dir, self.out, self.cwd):
            extra = sorted(p.name for p in d.iterdir() if p != self.canary)
            if extra:
                found.append(f"created in {d}: {extra}")
        return found

    def leaks(self, text: str | bytes) -> bool:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return self.token in text or PASSWD_MARKER in text
