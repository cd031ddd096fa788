"""The Arrow export's ceiling: ``python -m bench.arrow_ceiling STREAM PORT`` loads an Arrow IPC
stream file into memory and answers every ``GET /`` by writing it with pyarrow's IPC writer
straight onto the socket — no query, no framework, no engine. Downloaded with the same curl as
Colonnade's export, its MB/s is what this machine can move the same table at."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa

ARROW = "application/vnd.apache.arrow.stream"


def main() -> None:
    stream, port = sys.argv[1], int(sys.argv[2])
    with open(stream, "rb") as source:  # read into memory: serving must not touch the disk
        table = pa.ipc.open_stream(source).read_all()
    batches = table.to_batches()  # the batches Colonnade sent, as it sent them

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no framing cost

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ARROW if self.path == "/" else "text/plain")
            self.end_headers()
            if self.path != "/":  # /ready
                self.wfile.write(b"ok")
                return
            with pa.ipc.new_stream(self.wfile, table.schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)

        def log_message(self, *args: object) -> None:  # quiet, like the servers it stands beside
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
