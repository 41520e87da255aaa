"""Training on a busy machine: `python train.py --use-cv` idle and beside one busy process, per thread setting.

    python benchmarks/busy_speed.py                  # bundled data, trainer.num_threads auto vs all cores
    python benchmarks/busy_speed.py --repeats 5 --threads auto,1,2

Each run is a whole `train.py --use-cv` process (5 folds, 5 label-permutation baselines, final model,
W&B offline), as a user starts it, writing into a temporary folder. The busy process is one Python loop
spinning on a core, as a browser tab or a second job would. Runs alternate between the settings and the
idle / busy conditions; the median of each is reported with the slowdown busy / idle. The target is a
slowdown of at most 1.3x for `auto`. Results go to ``benchmarks/results/busy_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3  # busy / idle wall time with trainer.num_threads=auto


def one_run(threads: str, work: Path, config: str) -> float:
    sets = [f"trainer.num_threads={threads}", f"checkpoint.save_dir={work / 'checkpoints'}",
            f"logging.tensorboard_dir={work / 'tb'}", f"logging.wandb_dir={work / 'wandb'}",
            "trainer.accelerator=cpu"]
    cmd = [sys.executable, "train.py", "--use-cv", "--quiet", "--config", config]
    for s in sets:
        cmd += ["--set", s]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, WANDB_MODE="offline"))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--threads", default=f"auto,{os.cpu_count()}",
                   help="comma-separated trainer.num_threads settings (default: auto and every core, "
                        "PyTorch's own default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "busy_speed.json"))
    args = p.parse_args()
    settings = [s.strip() for s in args.threads.split(",") if s.strip()]
    times: dict[str, dict[str, list[float]]] = {s: {"idle": [], "busy": []} for s in settings}
    print(f"{args.config}: train.py --use-cv, {os.cpu_count()} CPUs, settings {', '.join(settings)}, "
          f"{args.repeats} repeats", flush=True)
    for r in range(args.repeats):
        for condition in ("idle", "busy"):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
            try:
                time.sleep(0.5 if spinner else 0.0)
                for s in (settings if r % 2 == 0 else settings[::-1]):
                    work = Path(tempfile.mkdtemp(prefix="netad-busy-"))
                    try:
                        times[s][condition].append(one_run(s, work, args.config))
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
                    print(f"repeat {r + 1} {condition:>4} num_threads={s:<4} {times[s][condition][-1]:6.2f} s",
                          flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    summary = {}
    for s in settings:
        idle, busy = (statistics.median(times[s][c]) for c in ("idle", "busy"))
        summary[s] = {"idle_s": idle, "busy_s": busy, "slowdown": busy / idle}
        print(f"num_threads={s:<4} idle {idle:6.2f} s, busy {busy:6.2f} s: {busy / idle:.2f}x")
    auto = summary.get("auto")
    if auto:
        print(f"auto busy / idle: {auto['slowdown']:.2f}x (target <= {TARGET:.1f}x: "
              f"{'met' if auto['slowdown'] <= TARGET else 'NOT met'})")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "setup": {"config": args.config, "repeats": args.repeats, "busy": "one Python process spinning on a core"},
        "seconds": times, "median": summary, "target": TARGET,
        "met": bool(auto and auto["slowdown"] <= TARGET),
    }, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
