"""A real S3-compatible HTTP server for the tests: moto's server in a process of its own on
127.0.0.1 (a separate process, so that its Python work never competes with the engines' GIL).

moto honours S3's conditional writes (``If-None-Match: *`` on PUT answers 412 when the object
exists), which delta-rs's commit protocol relies on: ``test_conditional_put_is_honoured`` keeps
that checked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Test credentials: the standard AWS variables, which every client in the chain reads.
# The instance-metadata lookups are switched off so no client ever reaches past 127.0.0.1.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "colonnadetestkey",
    "AWS_SECRET_ACCESS_KEY": "colonnade-test-secret-9f1c2e",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self, **credentials: str):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=credentials.get("key", CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=credentials.get("secret", CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
            region_name="us-east-1",
        )

    def iam(self):
        import boto3

        return boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(log: Path, env: dict[str, str] | None = None) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 until the block ends."""
    port = _free_port()
    environ = {**os.environ, **CREDENTIALS, **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start (see {log})")
                time.sleep(0.1)
            yield S3Server(f"http://127.0.0.1:{port}", proc)
        finally:
            from engine.processes import stop_process_group

            stop_process_group(proc, timeout_s=10)
