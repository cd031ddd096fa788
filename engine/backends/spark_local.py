"""A local Spark Connect server (``local[N]``) from the pyspark package, for development,
tests and benchmarks — a real cluster is the production target.

    python -m engine.backends.spark_local --port 15002      # then: sc://127.0.0.1:15002
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from engine.errors import EngineError
from engine.processes import stop_process_group

CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def command(port: int, *, cores: int = 2, driver_memory: str = "2g", conf: dict[str, str] | None = None) -> list[str]:
    extra = [arg for key, value in (conf or {}).items() for arg in ("--conf", f"{key}={value}")]
    return [
        str(spark_home() / "bin" / "spark-submit"),
        "--class",
        CONNECT_SERVER,
        "--master",
        f"local[{cores}]",
        "--name",
        "colonnade-spark",
        "--driver-memory",
        driver_memory,
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=4",
        *extra,
        "spark-internal",
    ]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_connect_server(
    port: int, *, log: Path | None = None, timeout_s: float = 120, conf: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a server in its own process group and wait until it listens on ``port``."""
    env = {**os.environ, "SPARK_HOME": str(spark_home())}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    try:
        proc = subprocess.Popen(
            command(port, conf=conf), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + timeout_s
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"the Spark Connect server did not start (exit {proc.poll()}); see {log}")
            time.sleep(0.1)  # a connect attempt on 127.0.0.1 costs nothing; the start is 5-10 s
    except BaseException:
        stop_process_group(proc)
        raise
    return proc


@contextlib.contextmanager
def local_connect_server(port: int, *, log: Path | None = None, timeout_s: float = 120) -> Iterator[str]:
    """Start a server, wait until it listens, yield its ``sc://`` URL, stop it afterwards."""
    proc = start_connect_server(port, log=log, timeout_s=timeout_s)
    try:
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=15002)
    args = parser.parse_args()
    with local_connect_server(args.port) as url:
        print(f"Spark Connect listening on {url} (Ctrl+C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
