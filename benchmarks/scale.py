"""Training past memory: one CV fold, one epoch, on a 10,000,000-row Parquet file out of core (peak memory), and
the time per row out of core against in memory on a 1,000,000-row file.

    python benchmarks/scale.py                      # writes the files under --work (about 1 GB), then measures
    python benchmarks/scale.py --rows 2000000 --small-rows 500000

The files are NSL-KDD's ``KDDTrain+_20Percent.txt`` repeated, each copy's numeric columns multiplied by
``1 + 0.01 * N(0, 1)`` (seeded; zeros stay zero), written as Parquet with the column names of
``configs/nsl_kdd.yaml``. Each measurement is a fresh process running ``run_cv(cfg, only_fold=0)`` with that config,
one epoch, no permutation baseline and no final model: the whole job (reading the labels, the splits, the leakage
check, fitting the fold's preprocessing, writing its rows, the epoch, scoring the validation and held-out rows).
Peak memory is the process's VmHWM; time per row is the job's wall time over the file's rows. Results go to
``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "nsl-kdd" / "KDDTrain+_20Percent.txt"
CONFIG = ROOT / "configs" / "nsl_kdd.yaml"
TARGETS = {"peak_gb": 3.0, "time_per_row_ratio": 1.5}


def make_file(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` rows of the source, repeated with noise, as Parquet (one row group per copy)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netad.config import load_config

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    names = load_config(str(CONFIG), []).data.column_names
    base = pd.read_csv(SOURCE, header=None, names=names)
    numeric = [c for c in base.columns if pd.api.types.is_numeric_dtype(base[c]) and c != "difficulty"]
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    writer, written = None, 0
    while written < rows:
        copy = base.iloc[: rows - written].copy()
        noise = 1.0 + 0.01 * rng.standard_normal((len(copy), len(numeric)))
        copy[numeric] = copy[numeric].to_numpy(dtype=np.float64) * noise
        table = pa.Table.from_pandas(copy, preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        written += len(copy)
    writer.close()
    tmp.replace(path)
    return path


def child(data: Path, work: Path, in_memory: str) -> None:
    """One fold, one epoch; prints the job's seconds and VmHWM as JSON."""
    from netad.config import load_config
    from netad.training.cv import run_cv

    sets = [f"data.data_path={data}", f"data.in_memory={in_memory}", f"checkpoint.save_dir={work / 'checkpoints'}",
            f"logging.tensorboard_dir={work / 'tb'}", "logging.use_wandb=false", "training.num_epochs=1",
            "cross_validation.permutation_baseline=false", "cross_validation.train_final_model=false"]
    cfg = load_config(str(CONFIG), sets)
    start = time.perf_counter()
    run_cv(cfg, run_name=f"scale-{in_memory}", only_fold=0, quiet=True)
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(json.dumps({"seconds": seconds, "vmhwm_gb": hwm_kb / 2**20}))


def measure(data: Path, work: Path, in_memory: str) -> dict:
    import pyarrow.parquet as pq

    out = subprocess.run([sys.executable, __file__, "--child", str(data), "--work", str(work / in_memory),
                          "--in-memory", in_memory], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {in_memory} run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = pq.ParquetFile(data).metadata.num_rows
    result.update(rows=rows, us_per_row=result["seconds"] / rows * 1e6)
    print(f"{data.name}, in_memory={in_memory}: {result['seconds']:.1f} s ({result['us_per_row']:.2f} µs a row), "
          f"peak {result['vmhwm_gb']:.2f} GB", flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--small-rows", type=int, default=1_000_000)
    p.add_argument("--work", type=Path, default=Path("/tmp/netad-scale"))
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--in-memory", default="false", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.work, args.in_memory)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    big = make_file(args.work / f"nsl_kdd_{args.rows}.parquet", args.rows)
    small = make_file(args.work / f"nsl_kdd_{args.small_rows}.parquet", args.small_rows)
    small_memory = measure(small, args.work / "small", "true")
    small_disk = measure(small, args.work / "small", "false")
    big_disk = measure(big, args.work / "big", "false")
    ratio = big_disk["us_per_row"] / small_memory["us_per_row"]
    result = {"in_memory_small": small_memory, "out_of_core_small": small_disk, "out_of_core_big": big_disk,
              "time_per_row_ratio_big_vs_small_in_memory": ratio,
              "time_per_row_ratio_small": small_disk["us_per_row"] / small_memory["us_per_row"],
              "targets": TARGETS,
              "met": {"peak_gb": big_disk["vmhwm_gb"] < TARGETS["peak_gb"],
                      "time_per_row_ratio": ratio <= TARGETS["time_per_row_ratio"]}}
    print(f"out of core on {args.rows:,} rows: peak {big_disk['vmhwm_gb']:.2f} GB (target < {TARGETS['peak_gb']}), "
          f"time per row {ratio:.2f}x the in-memory run on {args.small_rows:,} rows (target <= "
          f"{TARGETS['time_per_row_ratio']}x)")
    out = ROOT / "benchmarks" / "results" / "scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
