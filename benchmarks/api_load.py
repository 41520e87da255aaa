"""A bounded load test of the REST API on loopback: requests per second, latency, errors.

    python benchmarks/api_load.py                    # trains an NSL-KDD model first (about 20 s)
    python benchmarks/api_load.py --model checkpoints/nsl/best_model.ckpt --requests 20000 --concurrency 16

It starts ``python -m netad serve`` on 127.0.0.1 (a free port), sends a fixed number of
single-record ``POST /predict`` requests over a fixed number of keep-alive connections (records
taken in turn from ``KDDTest+.txt``), then times ``--batches`` requests of one 10,000-record batch
each, and stops the server. The client is a small asyncio HTTP/1.1 client, so the client's own
overhead stays low on a small machine (it shares the cores with the server). Nothing leaves
127.0.0.1. Results go to ``benchmarks/results/api_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nsl-kdd"
TARGETS = {"rps": 1500.0, "p99_ms": 20.0, "batch_ms": 100.0}
HOST = "127.0.0.1"


def records(n: int) -> list[dict]:
    import pandas as pd

    from netad.config import load_config

    names = load_config(ROOT / "configs" / "nsl_kdd.yaml").data.column_names
    frame = pd.read_csv(DATA / "KDDTest+.txt", header=None, names=names, nrows=n)
    return json.loads(frame.drop(columns=["attack", "difficulty"]).to_json(orient="records"))


def request_bytes(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def hammer(port: int, bodies: list[bytes], total: int, concurrency: int, timeout: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(total))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for i in counter:  # shared iterator: the connections take requests until all are sent
                start = time.perf_counter()
                try:
                    writer.write(bodies[i % len(bodies)])
                    status, _ = await asyncio.wait_for(read_response(reader), timeout)
                    if status != 200:
                        errors[str(status)] = errors.get(str(status), 0) + 1
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    lat = sorted(latencies)
    return {"requests": total, "concurrency": concurrency, "seconds": seconds, "rps": total / seconds,
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": 1000 * lat[-1], "errors": sum(errors.values()), "error_kinds": errors}


async def batches(port: int, body: bytes, n: int) -> dict:
    reader, writer = await asyncio.open_connection(HOST, port)
    wall, server = [], []
    try:
        for _ in range(n + 1):  # the first one warms up
            start = time.perf_counter()
            writer.write(body)
            status, payload = await read_response(reader)
            if status != 200:
                raise SystemExit(f"batch request failed: {status} {payload[:300]!r}")
            wall.append(1000 * (time.perf_counter() - start))
            server.append(json.loads(payload)["processing_time_ms"])
    finally:
        writer.close()
    return {"round_trip_ms_median": statistics.median(wall[1:]),
            "round_trip_ms_max": max(wall[1:]), "server_ms_median": statistics.median(server[1:])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int) -> subprocess.Popen:
    import urllib.request

    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stall the server
    proc = subprocess.Popen([sys.executable, "-m", "netad", "serve", "--model", str(model), "--host", HOST,
                             "--port", str(port), "--max-body-mb", "50"], stdout=log, stderr=log, text=True)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit("server failed to start:\n" + log.read()[-2000:])
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a netad checkpoint or exported folder (default: train one on NSL-KDD)")
    parser.add_argument("--requests", type=int, default=20_000, help="single-record requests (default 20000)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="records in the batch request (default 10000)")
    parser.add_argument("--batches", type=int, default=5, help="timed batch requests (default 5)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "api_load.json"))
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.requests > 1_000_000:
        raise SystemExit("--requests must be 1..1000000 and --concurrency at least 1")

    with tempfile.TemporaryDirectory(prefix="netad-api-load-") as tmp:
        if args.model:
            model = Path(args.model)
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from score_speed import train_model

            model = train_model(Path(tmp))
        rows = records(max(args.batch_size, 1000))
        singles = [request_bytes("/predict", json.dumps(r).encode()) for r in rows[:1000]]
        batch = request_bytes("/predict", json.dumps(rows[: args.batch_size]).encode())
        port = free_port()
        server = start_server(model, port)
        try:
            asyncio.run(hammer(port, singles, min(500, args.requests), args.concurrency, args.timeout))  # warm-up
            load = asyncio.run(hammer(port, singles, args.requests, args.concurrency, args.timeout))
            big = dict(asyncio.run(batches(port, batch, args.batches)), records=args.batch_size)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"single records: {load['requests']:,} requests over {load['concurrency']} connections in "
          f"{load['seconds']:.2f} s: {load['rps']:,.0f} req/s, p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms, "
          f"max {load['max_ms']:.1f} ms, errors {load['errors']}")
    print(f"{big['records']:,}-record batch: {big['round_trip_ms_median']:.1f} ms round trip (median of "
          f"{args.batches}; server {big['server_ms_median']:.1f} ms)")
    verdict = {"rps_met": load["rps"] >= TARGETS["rps"] and load["errors"] == 0,
               "p99_met": load["p99_ms"] < TARGETS["p99_ms"],
               "batch_met": big["round_trip_ms_median"] < TARGETS["batch_ms"]}
    print(f"targets: >= {TARGETS['rps']:.0f} req/s with 0 errors: {'met' if verdict['rps_met'] else 'NOT met'}; "
          f"p99 < {TARGETS['p99_ms']:.0f} ms: {'met' if verdict['p99_met'] else 'NOT met'}; "
          f"10k batch < {TARGETS['batch_ms']:.0f} ms: {'met' if verdict['batch_met'] else 'NOT met'}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count()}, "model": str(args.model or "trained (nsl_kdd)"),
                               "single": load, "batch": big, "targets": TARGETS, "met": verdict}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
