"""A bounded HTTP load client, for machines without wrk: the same summary line as bench/wrk.lua.

Each of --connections threads sends requests one after another on its own connection (opened
again whenever the server closes it) until --requests responses in all or --duration seconds.
Only loopback addresses are accepted. Prints "BENCH_JSON {...}" with microsecond latencies.
Example: python bench/loadgen.py --url http://127.0.0.1:8000/health --requests 2000 --duration 5
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], percent: float) -> float:
    """The nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(percent / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Load:
    """Shared budget and results of one run."""

    def __init__(self, requests: int, deadline: float) -> None:
        self.remaining = requests
        self.deadline = deadline
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.remaining <= 0 or time.perf_counter() >= self.deadline:
                return False
            self.remaining -= 1
            return True


def worker(load: Load, host: str, port: int, method: str, path: str, body: bytes | None,
           headers: dict[str, str], timeout: float) -> None:
    connection: http.client.HTTPConnection | None = None
    latencies: list[float] = []
    while load.take():
        start = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            with load.lock:
                load.errors["timeout"] += 1
            connection = None
            continue
        except ConnectionRefusedError:
            with load.lock:
                load.errors["connect"] += 1
            connection = None
            continue
        except (OSError, http.client.HTTPException):
            with load.lock:
                load.errors["read"] += 1
            connection = None
            continue
        latencies.append(time.perf_counter() - start)
        with load.lock:
            load.bytes += len(data)
            if not 200 <= response.status < 400:
                load.errors["status"] += 1
        if response.will_close:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    with load.lock:
        load.latencies.extend(latencies)


def run(url: str, method: str, body: bytes | None, requests: int, duration: float, connections: int,
        timeout: float) -> dict:
    """Send the load and return the summary document."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"error: {host} is not a loopback address; the load client only targets this machine.")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    start = time.perf_counter()
    load = Load(requests, start + duration)
    threads = [threading.Thread(target=worker, args=(load, host, parts.port or 80, method, parts.path or "/", body,
                                                     headers, timeout), daemon=True)
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    elapsed = time.perf_counter() - start
    latencies = sorted(load.latencies)
    micro = [value * 1e6 for value in latencies]
    return {"requests": len(latencies), "duration_us": int(elapsed * 1e6), "bytes": load.bytes,
            "p50_us": int(percentile(micro, 50)), "p90_us": int(percentile(micro, 90)),
            "p99_us": int(percentile(micro, 99)), "mean_us": sum(micro) / len(micro) if micro else 0.0,
            "max_us": int(micro[-1]) if micro else 0, "errors": load.errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a loopback URL")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default=None, help="a file whose bytes are the JSON body")
    parser.add_argument("--requests", type=int, default=1000, help="stop after this many responses")
    parser.add_argument("--duration", type=float, default=5.0, help="stop after this many seconds")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one request may take")
    args = parser.parse_args(argv)
    body = None
    if args.body:
        with open(args.body, "rb") as handle:
            body = handle.read()
    summary = run(args.url, args.method, body, args.requests, args.duration, args.connections, args.timeout)
    print("BENCH_JSON " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
