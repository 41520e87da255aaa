"""Ray scoring against predict.py, side by side on one machine: ``predict.py --engine ray`` on a local cluster
of ``--cpus`` CPUs, predict.py's own route on the same files, and (for the record) the actor pool that the Ray
route does not use.

    python benchmarks/ray_scoring.py                 # 4,000,000 rows in 8 Parquet files under --work
    python benchmarks/ray_scoring.py --rows 8000000 --repeats 3

The files are the bundled CSV repeated, each copy's numeric columns plus ``N(0, 0.01)`` noise (seeded), with a
``row_id`` column, written as Parquet. The model is trained here (one split, two epochs) on the bundled CSV.
Times are the scoring calls in this process (``score_inputs`` and ``score_with_ray``: reading, scoring and
writing every file), each the median of ``--repeats``; "cold" is Ray's first run on a fresh cluster (its worker
processes import PyTorch and load the model), "warm" the runs after it. The Ray output must equal predict.py's,
row by row (joined on ``row_id``), scores bit for bit. Results go to ``benchmarks/results/ray_scoring.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "raw" / "embedded_system_network_security_dataset.csv"
TARGET_RATIO = 0.5  # Ray's rows/s at least half of predict.py's


def make_files(folder: Path, rows: int, n_files: int, seed: int = 0) -> Path:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_file = rows // n_files
    marker = folder / f".rows_{per_file}x{n_files}"
    if marker.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base = pd.read_csv(SOURCE)
    numeric = [c for c in base.columns if pd.api.types.is_float_dtype(base[c])]
    rng = np.random.default_rng(seed)
    for i in range(n_files):
        copy = pd.concat([base] * (per_file // len(base) + 1), ignore_index=True).iloc[:per_file].copy()
        copy[numeric] = copy[numeric].to_numpy() + rng.normal(0.0, 0.01, size=(len(copy), len(numeric)))
        copy.insert(0, "row_id", np.arange(per_file, dtype=np.int64) + i * per_file)
        pq.write_table(pa.Table.from_pandas(copy, preserve_index=False), folder / f"part{i:02d}.parquet")
    marker.touch()
    return folder


def train_model(work: Path) -> Path:
    from netad.config import load_config
    from netad.training.cv import run_single

    cfg = load_config(str(ROOT / "config.yaml"), [f"data.data_path={SOURCE}", f"checkpoint.save_dir={work / 'ckpt'}",
                                                  "training.num_epochs=2", "logging.use_wandb=false",
                                                  f"logging.tensorboard_dir={work / 'tb'}"])
    return Path(run_single(cfg, run_name="bench", quiet=True).checkpoint)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "netad_ray_bench")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ray_scoring.json")
    args = p.parse_args()

    import logging

    import pyarrow.dataset as pads
    import ray

    from netad.inference import load_predictor
    from netad.serving.columnar import score_inputs
    from netad.serving.ray_scoring import BatchScorer, _model_reference, score_with_ray

    inputs = make_files(args.work / "flows", args.rows, args.files)
    model = train_model(args.work)
    predictor = load_predictor(model)
    out_local, out_ray = args.work / "scored_local", args.work / "scored_ray"

    def local() -> None:
        shutil.rmtree(out_local, ignore_errors=True)
        score_inputs(predictor, inputs, out_local, progress=False)

    def with_ray() -> None:
        shutil.rmtree(out_ray, ignore_errors=True)
        score_with_ray(model, inputs, out_ray, progress=False)

    def actor_pool() -> None:
        shutil.rmtree(out_ray, ignore_errors=True)
        files = sorted(str(f) for f in inputs.glob("*.parquet"))
        ray.data.read_parquet(files).map_batches(
            BatchScorer, fn_constructor_kwargs={"model": _model_reference(model)}, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=args.cpus), num_cpus=0.5).write_parquet(str(out_ray))

    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        cold = timed(with_ray)
        times: dict[str, list[float]] = {"predict_py": [], "ray_warm": []}
        for _ in range(args.repeats):  # alternating, so a busy moment hits both alike
            times["predict_py"].append(timed(local))
            times["ray_warm"].append(timed(with_ray))
        timed(actor_pool)  # its actors' first start, not measured; after the task runs, whose workers it displaces
        times["ray_actor_pool_warm"] = [timed(actor_pool) for _ in range(args.repeats)]
        with_ray()  # the engine's own output, to compare
    finally:
        ray.shutdown()
    a = pads.dataset(str(out_ray)).to_table().sort_by("row_id")
    b = pads.dataset(str(out_local)).to_table().sort_by("row_id")
    same = a.num_rows == b.num_rows == args.rows and a.drop_columns(["reject_reason"]).equals(b)
    scores_equal = bool(np.array_equal(a.column("score").to_numpy(), b.column("score").to_numpy()))
    median = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: args.rows / v for k, v in median.items()}
    result = {
        "rows": args.rows, "files": args.files, "cpus": args.cpus, "repeats": args.repeats,
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()}, "ray_cold_seconds": round(cold, 2),
        "rows_per_second": {k: round(v) for k, v in rate.items()} | {"ray_cold": round(args.rows / cold)},
        "ratio_ray_warm": round(rate["ray_warm"] / rate["predict_py"], 2),
        "ratio_ray_cold": round(args.rows / cold / rate["predict_py"], 2),
        "ratio_actor_pool_warm": round(rate["ray_actor_pool_warm"] / rate["predict_py"], 2),
        "output_equal": bool(same), "scores_bit_for_bit": scores_equal, "target_ratio": TARGET_RATIO,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
