"""What one ingest did: the result returned to callers and printed by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class IngestSummary:
    table: str
    version: int
    rows: int
    files: int
    bytes_in: int
    seconds: float
    rejected: int = 0
    bytes_out: int = 0
    files_written: int = 0
    quarantine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rejected = f", {self.rejected:,} rejected → {self.quarantine}" if self.quarantine else ""
        return (
            f"{self.table}: {self.rows:,} rows{rejected} from {self.files} file(s), "
            f"{_mb(self.bytes_in)} in, {_mb(self.bytes_out)} out, {self.seconds:.2f} s → version {self.version}"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
