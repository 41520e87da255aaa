"""Scoring a saved model imports no training or logging library: loading a checkpoint or an exported folder,
scoring rows, the batch scorer, predict.py's entry point (with explanations too) and test.py's (without logging)
run in a fresh process without Lightning, W&B or TensorBoard ever being imported."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import make_frame, tiny_model

#: what a process that only scores must never import
TRAINING_ONLY = ("lightning", "pytorch_lightning", "lightning_fabric", "wandb", "tensorboard",
                 "torch.utils.tensorboard", "tensorboardX")

SCRIPT = """
import json, sys
from netad.inference import load_predictor
from netad.serving.batch import score_file
from netad.cli import predict_main, test_main

ckpt, folder, rows, labelled, out = sys.argv[1:6]
scores = {}
for name, model in (("checkpoint", ckpt), ("folder", folder)):
    scores[name] = load_predictor(model).score(rows).tolist()
    scores[name + " file"] = score_file(model, rows, f"{out}/{name}.csv", progress=False).n_scored
codes = [predict_main(["--model", ckpt, "--input", rows, "--output", f"{out}/predict.csv", "--quiet"]),
         predict_main(["--model", ckpt, "--input", rows, "--output", f"{out}/why_ckpt.csv", "--quiet", "--explain", "2"]),
         predict_main(["--model", folder, "--input", rows, "--output", f"{out}/why_folder.csv", "--quiet",
                       "--explain", "2"]),
         test_main(["--model", ckpt, "--data", labelled, "--no-log", "--bootstrap", "0", "--quiet",
                    "--results", f"{out}/results.csv"])]
print(json.dumps({"scores": scores, "codes": codes, "imported": [m for m in %r if m in sys.modules]}))
"""


def test_scoring_imports_no_training_or_logging_library(tmp_path):
    from netad.export.artifact import export_checkpoint

    ckpt = tiny_model(tmp_path, seed=4, run_name="iso")
    folder = export_checkpoint(ckpt, tmp_path / "export")
    frame = make_frame(n=12, seed=5)
    rows, labelled = tmp_path / "rows.csv", tmp_path / "labelled.csv"
    frame.drop(columns=["label"]).to_csv(rows, index=False)
    frame.to_csv(labelled, index=False)
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-c", SCRIPT % (TRAINING_ONLY,), str(ckpt), str(folder), str(rows),
                           str(labelled), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0], proc.stderr
    scores = report["scores"]
    assert len(scores["checkpoint"]) == 12 and scores["checkpoint"] == scores["folder"]
    assert scores["checkpoint file"] == scores["folder file"] == 12
    assert (tmp_path / "out" / "predict.csv").is_file() and (tmp_path / "out" / "results.csv").is_file()
    assert report["imported"] == []
    # the exported folder explains as the checkpoint does: its baseline travels in config.json
    why = (tmp_path / "out" / "why_ckpt.csv").read_text()
    assert why == (tmp_path / "out" / "why_folder.csv").read_text()
    assert why.splitlines()[0].endswith(",why_1,why_1_contribution,why_2,why_2_contribution")
