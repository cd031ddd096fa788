"""Request handlers for ``engine.backends.isolation`` workers in tests: each does one thing
the pool must survive (echo batches, spin, crash, run out of memory, fail mid-stream)."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from engine.errors import ColonnadeError, QueryError


def echo(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    return request["schema"], iter(request["batches"])


def limits(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The worker's own address-space limit and environment, as one row."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    batch = pa.record_batch(
        {
            "soft": [soft],
            "hard": [hard],
            "pid": [os.getpid()],
            "threads": [os.environ.get("POLARS_MAX_THREADS")],
        }
    )
    return batch.schema, iter([batch])


def spin(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    while True:
        pass


def abort(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Die the way a Rust engine dies when an allocation fails (or crash plainly)."""
    if request.get("message"):
        sys.stderr.write(request["message"] + "\n")
        sys.stderr.flush()
    os.abort()


def hog(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Allocate past the worker's address-space cap."""
    held = [bytearray(256 * 1024**2) for _ in range(request.get("chunks", 1000))]
    batch = pa.record_batch({"n": [len(held)]})
    return batch.schema, iter([batch])


def fail_midway(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    batch = pa.record_batch({"n": [1, 2, 3]})

    def batches() -> Iterator[pa.RecordBatch]:
        yield batch
        raise ValueError("the engine failed after one batch")

    return batch.schema, batches()


def fail(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    raise ValueError("the engine refused the request")


def translate(exc: BaseException) -> ColonnadeError:
    return QueryError(f"handler: {exc}")


def noisy(request: dict[str, Any]) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Complain on stderr and answer; or, asked to, crash without a word."""
    if request.get("crash"):
        os.abort()
    sys.stderr.write("memory allocation of 1 bytes failed (a warning of an earlier request)\n")
    sys.stderr.flush()
    batch = pa.record_batch({"n": [1]})
    return batch.schema, iter([batch])
