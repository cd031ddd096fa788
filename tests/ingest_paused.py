"""Run ``colonnade`` with the ingest paused at one stage, for the crash tests to SIGKILL it there.

    python tests/ingest_paused.py STAGE ingest ARGS...

STAGE is ``before_write`` (planned, nothing written), ``after_write`` (Parquet files written, no
commit) or ``before_commit`` (bad rows checked, about to commit). The process announces
``paused:STAGE`` on stderr and waits for a line on stdin, then carries on (or is killed there).
The stages wrap the real functions from outside, so the production code carries no test hook.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from engine import cli
from engine.ingest import job


def pause(stage: str) -> None:
    print(f"paused:{stage}", file=sys.stderr, flush=True)
    if not sys.stdin.readline():  # stdin closed without a word: wait to be killed
        time.sleep(3600)


def around(fn: Callable[..., Any], before: str | None = None, after: str | None = None) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before == STAGE:
            pause(before)
        result = fn(*args, **kwargs)
        if after == STAGE:
            pause(after)
        return result

    return wrapped


STAGE = sys.argv[1]
job.Job._copy = around(job.Job._copy, before="before_write", after="after_write")  # type: ignore[method-assign]
job.commit_files = around(job.commit_files, before="before_commit")
cli.main(sys.argv[2:])
