"""Fixtures for object storage: one real S3 server per session, a fresh bucket per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import Settings, load_settings
from tests.conftest import TEST_QUERY_TIMEOUT_S
from tests.objectstore.s3server import CREDENTIALS, S3Server, s3_server

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server for the session; the AWS variables point every client at it."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
            yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"colonnade-{os.getpid()}-{next(_buckets)}"
    s3.client().create_bucket(Bucket=name)
    return name


def s3_env(s3: S3Server, local: Path) -> dict[str, str]:
    """What a Colonnade process needs to reach the test store: endpoint and a local dir."""
    return {
        **CREDENTIALS,
        "COLONNADE_STORAGE_ENDPOINT_URL": s3.endpoint,
        "COLONNADE_STORAGE_LOCAL_DIR": str(local),
        "COLONNADE_STORAGE_CONNECT_TIMEOUT_S": "2",
        "COLONNADE_STORAGE_REQUEST_TIMEOUT_S": "20",
        "COLONNADE_LIMITS_QUERY_TIMEOUT_S": TEST_QUERY_TIMEOUT_S,
    }


def s3_settings(s3: S3Server, local: Path, **extra: str) -> Settings:
    return load_settings(environ={**s3_env(s3, local), **extra})


@pytest.fixture
def settings(s3: S3Server, tmp_path: Path) -> Settings:
    return s3_settings(s3, tmp_path / "local")
