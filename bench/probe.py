"""``python -m bench.probe URL INTERVAL``: ``GET URL/health`` every INTERVAL s until killed,
printing ``<monotonic s> <latency ms>`` per request (-1 when it failed). A new connection every
second, so with several workers the probe visits each of them."""

from __future__ import annotations

import sys
import time

import httpx


def main() -> None:
    url, interval = sys.argv[1], float(sys.argv[2])
    client, opened = httpx.Client(timeout=10), time.monotonic()
    while True:
        if time.monotonic() - opened > 1:
            client.close()
            client, opened = httpx.Client(timeout=10), time.monotonic()
        t = time.monotonic()
        try:
            ok = client.get(url + "/health").status_code == 200
        except httpx.HTTPError:
            ok = False
        ms = (time.monotonic() - t) * 1000 if ok else -1.0
        print(f"{t:.4f} {ms:.3f}", flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - t)))


if __name__ == "__main__":
    main()
