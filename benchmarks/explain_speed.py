"""How fast explanations are, and how exact: predict.py --explain 3 over KDDTest+, each attribution method's
rows/s and convergence error, and POST /predict?explain=3 latency at a fixed request rate.

    python benchmarks/explain_speed.py                 # trains an NSL-KDD classifier first (about 15 s)
    python benchmarks/explain_speed.py --model checkpoints/best_model.ckpt --rate 200 --seconds 10

Batch: ``score_file`` (predict.py's work) over ``KDDTest+.txt`` with and without ``--explain 3``, best of
``--repeat`` runs, the whole call timed (Captum's import included). Methods: DeepLift and Integrated Gradients
on the same encoded rows, timed alone, with the largest and the median convergence error (the attributions'
sum minus the logit's move from the baseline). API: ``python -m netad serve`` on 127.0.0.1; single-record
requests sent on a fixed schedule (open loop: ``--rate`` per second over a pool of keep-alive connections),
each latency counted from the moment its request was due, so a server that falls behind is seen. Nothing
leaves 127.0.0.1. Results go to ``benchmarks/results/explain_speed.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from api_load import HOST, free_port, read_response, records, request_bytes, start_server  # noqa: E402
from score_speed import DATA, train_model  # noqa: E402

TARGETS = {"explain_rows_per_s": 20_000.0, "api_p99_ms": 30.0}


def batch(model: Path, work: Path, repeat: int) -> dict:
    from netad.serving.batch import score_file

    source = DATA / "KDDTest+.txt"
    out = {}
    for name, kwargs in (("plain", {}), ("explain_3", {"explain": 3})):
        times = []
        for i in range(repeat):
            start = time.perf_counter()
            result = score_file(model, source, work / f"{name}.csv", progress=False, **kwargs)
            times.append(time.perf_counter() - start)
        out[name] = {"rows": result.n_rows, "seconds_best": min(times), "seconds_all": times,
                     "rows_per_s": result.n_rows / min(times)}
    return out


def methods(model: Path, repeat: int) -> dict:
    import pandas as pd
    import torch

    from netad.inference import load_predictor
    from netad.inference.explain import Explainer

    predictor = load_predictor(model)
    names = predictor.config["data"]["column_names"]
    frame = pd.read_csv(DATA / "KDDTest+.txt", header=None, names=names, dtype=predictor.preprocessor.csv_dtypes())
    enc = predictor.preprocessor.encode(frame[predictor.columns])
    threads = torch.get_num_threads()
    out = {}
    for method in ("deeplift", "integrated_gradients"):
        explainer = Explainer(predictor, method)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            e = explainer.explain_encoded(enc)
            times.append(time.perf_counter() - start)
        delta = np.abs(e.delta)
        out[method] = {"rows_per_s": len(frame) / min(times), "threads": threads,
                       "max_abs_delta": float(delta.max()), "median_abs_delta": float(np.median(delta)),
                       "mean_abs_logit_move": float(np.abs(e.classifier.sum(axis=1)).mean())}
    return out


async def paced(port: int, bodies: list[bytes], rate: float, seconds: float, connections: int) -> dict:
    """Requests due at ``i / rate``; each waits for a free keep-alive connection; latency from its due time."""
    total = int(rate * seconds)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(HOST, port))
    latencies, errors = [], 0
    start = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        reader, writer = await pool.get()
        try:
            writer.write(bodies[i % len(bodies)])
            status, payload = await read_response(reader)
            if status != 200 or b'"explanation"' not in payload:
                errors += 1
        finally:
            pool.put_nowait((reader, writer))
        latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    lat = np.sort(np.array(latencies)) * 1000
    return {"requests": total, "rate": rate, "achieved_rps": total / elapsed, "connections": connections,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat[-1]), "errors": errors}


def api(model: Path, rate: float, seconds: float, connections: int) -> dict:
    rows = records(1000)
    bodies = [request_bytes("/predict?explain=3", json.dumps(r).encode()) for r in rows]
    port = free_port()
    server = start_server(model, port)
    try:
        asyncio.run(paced(port, bodies, rate, 2.0, connections))  # warm-up: Captum loads on the first request
        return asyncio.run(paced(port, bodies, rate, seconds, connections))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a netad checkpoint or exported folder (default: train one on NSL-KDD)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per batch contender and method (default 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="API requests per second (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="API test length (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "explain_speed.json"))
    args = parser.parse_args()
    if args.repeat < 1 or not 0 < args.rate <= 5000 or not 0 < args.seconds <= 120 or args.connections < 1:
        raise SystemExit("--repeat >= 1, --rate in (0, 5000], --seconds in (0, 120], --connections >= 1")

    with tempfile.TemporaryDirectory(prefix="netad-explain-speed-") as tmp:
        work = Path(tmp)
        model = Path(args.model) if args.model else train_model(work)
        b = batch(model, work, args.repeat)
        m = methods(model, args.repeat)
        a = api(model, args.rate, args.seconds, args.connections)

    e = b["explain_3"]
    print(f"predict --explain 3 over KDDTest+ ({e['rows']:,} rows): {e['seconds_best']:.2f} s, "
          f"{e['rows_per_s']:,.0f} rows/s (without explanations: {b['plain']['rows_per_s']:,.0f} rows/s)")
    for name, r in m.items():
        print(f"{name}: {r['rows_per_s']:,.0f} rows/s on {r['threads']} threads, convergence error max "
              f"{r['max_abs_delta']:.2e}, median {r['median_abs_delta']:.2e} (mean |logit move| "
              f"{r['mean_abs_logit_move']:.2f})")
    print(f"POST /predict?explain=3, one record, {a['rate']:.0f} req/s for {a['requests'] / a['rate']:.0f} s "
          f"({a['achieved_rps']:.0f} achieved): p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms, "
          f"max {a['max_ms']:.1f} ms, errors {a['errors']}")
    met = {"explain_rows_per_s": e["rows_per_s"] >= TARGETS["explain_rows_per_s"],
           "api_p99_ms": a["p99_ms"] < TARGETS["api_p99_ms"] and a["errors"] == 0}
    print("targets: " + "; ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count()}, "model": str(args.model or "trained (nsl_kdd)"),
                               "batch": b, "methods": m, "api": a, "targets": TARGETS, "met": met}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
