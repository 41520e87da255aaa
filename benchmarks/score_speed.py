"""Batch scoring speed: CSV file in, scored CSV out, netad against a k-means ensemble scorer.

    python benchmarks/score_speed.py                      # trains an NSL-KDD model first (about 20 s)
    python benchmarks/score_speed.py --model checkpoints/nsl/best_model.ckpt

Files: the official NSL-KDD test set (``KDDTest+.txt``, 22,544 rows) and a 1,000,000-row file
made by repeating it. Contenders, each in its own process (so its peak memory is its own), timed
from opening the CSV to the last byte of scores written (imports and model loading excluded):

* **netad**: ``netad.serving.batch.score_file``, as ``predict.py`` calls it.
* **k-means ensemble**: the kind of scorer some tools ship: five scikit-learn ``KMeans`` models
  (k = 8, different seeds) fitted on the normal training rows after one-hot encoding and standard
  scaling; a row's vote per model is "distance to the nearest centre above that model's 95th
  percentile on the training rows"; the majority vote flags it. It reads with pandas in chunks and
  writes the input rows plus ``score`` (the mean vote) and ``is_anomaly`` with ``to_csv``.

Each contender runs ``--repeat`` times per file (median reported, every run's time in the JSON).
Results go to ``benchmarks/results/score_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nsl-kdd"
TARGET_RATIO = 10.0
TARGET_PEAK_MB = 1024


# ---------------------------------------------------------------- contenders (child processes)
def run_netad(model: str, input_path: str, output: str) -> dict:
    from netad.inference import load_predictor
    from netad.serving.batch import score_file

    predictor = load_predictor(model)
    start = time.perf_counter()
    result = score_file(predictor, input_path, output, progress=False)
    return {"seconds": time.perf_counter() - start, "rows": result.n_rows, "flagged": result.n_flagged}


def run_kmeans(model: str, input_path: str, output: str) -> dict:
    import joblib
    import numpy as np
    import pandas as pd

    ens = joblib.load(model)
    start = time.perf_counter()
    rows = flagged = 0
    with open(output, "w", newline="") as out:
        for i, chunk in enumerate(pd.read_csv(input_path, header=None, names=ens["names"], chunksize=100_000)):
            x = pd.get_dummies(chunk[ens["features"]], columns=ens["categorical"], dtype=np.float32)
            x = ens["scaler"].transform(x.reindex(columns=ens["columns"], fill_value=0.0).to_numpy(np.float32))
            votes = np.mean([km.transform(x).min(axis=1) > cut for km, cut in zip(ens["models"], ens["cuts"])], axis=0)
            chunk = chunk.assign(score=votes, is_anomaly=(votes > 0.5).astype(np.int64))
            chunk.to_csv(out, index=False, header=i == 0)
            rows += len(chunk)
            flagged += int(chunk["is_anomaly"].sum())
    return {"seconds": time.perf_counter() - start, "rows": rows, "flagged": flagged}


def fit_kmeans(train_path: Path, out: Path) -> None:
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from netad.config import load_config

    names = load_config(ROOT / "configs" / "nsl_kdd.yaml").data.column_names
    frame = pd.read_csv(train_path, header=None, names=names)
    normal = frame[frame["attack"] == "normal"]
    features = [c for c in names if c not in ("attack", "difficulty")]
    categorical = ["protocol_type", "service", "flag"]
    x = pd.get_dummies(normal[features], columns=categorical, dtype=np.float32)
    scaler = StandardScaler().fit(x.to_numpy(np.float32))
    xs = scaler.transform(x.to_numpy(np.float32))
    models = [KMeans(n_clusters=8, n_init=1, random_state=seed).fit(xs) for seed in range(5)]
    cuts = [float(np.percentile(km.transform(xs).min(axis=1), 95)) for km in models]
    joblib.dump({"names": names, "features": features, "categorical": categorical, "columns": list(x.columns),
                 "scaler": scaler, "models": models, "cuts": cuts}, out)


def child(kind: str, model: str, input_path: str, output: str) -> None:
    result = (run_netad if kind == "netad" else run_kmeans)(model, input_path, output)
    result["peak_mb"] = peak_mb()

    print("RESULT " + json.dumps(result))


def peak_mb() -> float:
    """This process's peak resident memory, imports included. (VmHWM, not getrusage's ru_maxrss,
    which a child started by a large parent inherits from it.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- driver
def measure(kind: str, model: Path, input_path: Path, output: Path) -> dict:
    # Start from a quiet disk, the same for both contenders: the writeback of the previous run's
    # output (about 160 MB on the large file) should not overlap this run on a 2-core machine.
    os.sync()
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(model), str(input_path), str(output)],
                          capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} failed on {input_path}:\n{proc.stderr[-2000:]}")
    output.unlink(missing_ok=True)
    return json.loads(lines[-1][len("RESULT "):])


def repeat_file(source: Path, rows: int, out: Path) -> Path:
    lines = source.read_bytes().splitlines(keepends=True)
    full, rest = divmod(rows, len(lines))
    with out.open("wb") as fh:
        block = b"".join(lines)
        for _ in range(full):
            fh.write(block)
        fh.write(b"".join(lines[:rest]))
    return out


def train_model(work: Path) -> Path:
    from netad.config import load_config
    from netad.training.cv import run_single

    cfg = load_config(ROOT / "configs" / "nsl_kdd.yaml", overrides=[
        f"checkpoint.save_dir={work / 'checkpoints'}", f"logging.tensorboard_dir={work / 'tb'}",
        "logging.use_wandb=false", f"data.data_path={DATA / 'KDDTrain+_20Percent.txt'}"])
    run_single(cfg, run_name="bench", quiet=True)
    return work / "checkpoints" / "best_model.ckpt"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a netad checkpoint or exported folder (default: train one on NSL-KDD)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the large file (default 1000000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender and file (default 5)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "score_speed.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="netad-score-speed-") as tmp:
        work = Path(tmp)
        model = Path(args.model) if args.model else train_model(work)
        kmeans = work / "kmeans.joblib"
        fit_kmeans(DATA / "KDDTrain+_20Percent.txt", kmeans)
        files = {"KDDTest+.txt": DATA / "KDDTest+.txt",
                 f"{args.rows:,} rows": repeat_file(DATA / "KDDTest+.txt", args.rows, work / "large.csv")}
        results = []
        for label, path in files.items():
            runs = {"netad": [], "kmeans": []}
            for _ in range(args.repeat):  # alternate, so drift in machine load hits both
                runs["netad"].append(measure("netad", model, path, work / "out.csv"))
                runs["kmeans"].append(measure("kmeans", kmeans, path, work / "out.csv"))
            row = {"file": label, "rows": runs["netad"][0]["rows"]}
            for kind, rs in runs.items():
                seconds = statistics.median(r["seconds"] for r in rs)
                row[kind] = {"seconds": seconds, "rows_per_s": row["rows"] / seconds,
                             "peak_mb": max(r["peak_mb"] for r in rs), "flagged": rs[0]["flagged"],
                             "runs_s": [round(r["seconds"], 4) for r in rs]}
            row["speedup"] = row["netad"]["rows_per_s"] / row["kmeans"]["rows_per_s"]
            results.append(row)
            print(f"{label:>18}: netad {row['netad']['rows_per_s']:>11,.0f} rows/s "
                  f"({row['netad']['seconds']:.2f} s, peak {row['netad']['peak_mb']:.0f} MB) | k-means ensemble "
                  f"{row['kmeans']['rows_per_s']:>9,.0f} rows/s ({row['kmeans']['seconds']:.2f} s, peak "
                  f"{row['kmeans']['peak_mb']:.0f} MB) | netad / k-means {row['speedup']:.1f}x", flush=True)

    large = results[-1]
    verdict = {
        "ratio_target": TARGET_RATIO, "ratio_met": large["speedup"] >= TARGET_RATIO,
        "peak_mb_target": TARGET_PEAK_MB, "peak_mb_met": large["netad"]["peak_mb"] < TARGET_PEAK_MB,
    }
    print(f"targets on the large file: >= {TARGET_RATIO:.0f}x the k-means ensemble: "
          f"{'met' if verdict['ratio_met'] else 'NOT met'}; "
          f"peak < {TARGET_PEAK_MB} MB: {'met' if verdict['peak_mb_met'] else 'NOT met'}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                               "model": str(args.model or "trained on KDDTrain+_20Percent (configs/nsl_kdd.yaml)"),
                               "results": results, "targets": verdict}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
