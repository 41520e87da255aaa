"""test.py and assess_model.py on a small trained CV run: numbers, files, logs and bad input."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn import metrics as skm

from conftest import ROOT, fast_config, make_frame
from netad.cli import assess_main
from netad.cli import test_main as run_test_main
from netad.evaluation.assess import FIGURES as ALL_FIGURES
from netad.evaluation.evaluate import HIGH_FPR, MAX_BOOTSTRAP, RESULT_COLUMNS, check_bootstrap, evaluate_checkpoint
from netad.training.cv import run_cv, run_single

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: the fixture data has no attack-type column: every figure but the per-type one
FIGURES = {k: v for k, v in ALL_FIGURES.items() if k != "type_recall"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-fold CV run with a final model (about 10 s), shared by the tests of this module."""
    root = tmp_path_factory.mktemp("evalrun")
    csv_path = root / "traffic.csv"
    make_frame(n=400, signal=1.5, seed=3).to_csv(csv_path, index=False)
    cfg = fast_config(root, csv_path)
    result = run_cv(cfg, run_name="ev", quiet=True)
    return {"root": root, "cfg": cfg, "csv": csv_path, "run": result.run_dir, "cv": result,
            "best": Path(cfg.checkpoint.save_dir) / "best_model.ckpt"}


def cli(main, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 2000 and data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width > 200 and im.height > 200, (path, im.size)
        # not a blank canvas: a real plot has many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20, path


def reference_scores(checkpoint: Path, features) -> np.ndarray:
    """The model's scores recomputed by hand from the checkpoint file (not through evaluate.py or the
    predictor): the whole one-hot feature matrix through the plain MLP."""
    from netad.data.preprocessing import TabularPreprocessor
    from netad.models.mlp import MLP

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    net = MLP(hp["input_dim"], hp["hidden_dims"], hp["dropout"], hp["activation"]).eval()
    net.load_state_dict({k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    x = torch.from_numpy(TabularPreprocessor.from_state(ckpt["netad"]["preprocessor"]).transform(features))
    with torch.no_grad():
        return torch.sigmoid(net(x)).numpy()


def wandb_config(trained, tmp_path, monkeypatch) -> Path:
    """The run's config with offline W&B and TensorBoard under tmp_path, for --config."""
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    cfg = trained["cfg"].to_dict()
    cfg["logging"].update(use_wandb=True, wandb_mode="offline", wandb_dir=str(tmp_path / "wb"),
                          tensorboard_dir=str(tmp_path / "tb"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config


# ------------------------------------------------------------------------- test.py


def test_holdout_metrics_equal_sklearn(trained):
    result = evaluate_checkpoint(trained["best"], n_bootstrap=200)
    splits = json.loads((trained["run"] / "splits.json").read_text())
    frame = make_frame(n=400, signal=1.5, seed=3)
    rows = np.array(splits["test"])
    y = frame["label"].to_numpy().astype(int)[rows]
    s = reference_scores(trained["best"], frame.drop(columns=["label"]).iloc[rows])
    t = result.threshold
    pred = (s >= t).astype(int)
    assert result.n_rows == len(rows) and result.n_anomalies == int(y.sum())
    expected = {"accuracy": skm.accuracy_score(y, pred), "precision": skm.precision_score(y, pred, zero_division=0),
                "recall": skm.recall_score(y, pred), "f1": skm.f1_score(y, pred),
                "auroc": skm.roc_auc_score(y, s), "auprc": skm.average_precision_score(y, s)}
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-5), name
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert result.confusion == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert result.metrics["fpr"] == pytest.approx(fp / (fp + tn))
    for name in ("f1", "auroc", "auprc"):
        assert result.ci[name]["low"] <= result.metrics[name] <= result.ci[name]["high"], name
    assert result.majority_accuracy == pytest.approx(max(y.mean(), 1 - y.mean()))


def test_results_csv_gains_one_row_per_run(trained, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    ckpt = str(trained["best"])
    code, out, err = cli(run_test_main, capsys, "--checkpoint", ckpt, "--bootstrap", "100", "--no-log")
    assert code == 0, err
    assert "95 % bootstrap CI (100 resamples)" in out and "Confusion matrix" in out
    assert "always answering the majority class" in out and "ROC AUC vs chance" in out
    with open("test_results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and list(rows[0]) == RESULT_COLUMNS
    assert rows[0]["model_name"] == "ev/final" and rows[0]["checkpoint"] == ckpt
    printed_auroc = re.search(r"auroc\s+([0-9.]+)", out).group(1)
    assert f"{float(rows[0]['auroc']):.4f}" == printed_auroc

    code, _, err = cli(run_test_main, capsys, "--checkpoint", ckpt, "--bootstrap", "0", "--no-log",
                       "--model-name", "second", "--data", str(trained["csv"]))
    assert code == 0, err
    with open("test_results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model_name"] for r in rows] == ["ev/final", "second"]
    assert rows[1]["data"] == str(trained["csv"]) and rows[1]["n_rows"] == "400"
    assert Path("test_results.csv").read_text().count("timestamp,") == 1  # one header

    other = tmp_path / "sub" / "other.csv"
    code, _, err = cli(run_test_main, capsys, "--checkpoint", ckpt, "--bootstrap", "0", "--no-log", "--results", str(other))
    assert code == 0, err
    assert len(list(csv.DictReader(other.open()))) == 1
    assert len(list(csv.DictReader(open("test_results.csv")))) == 2


def test_results_csv_with_other_columns_is_refused(trained, capsys, tmp_path):
    bad = tmp_path / "theirs.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = cli(run_test_main, capsys, "--checkpoint", str(trained["best"]), "--bootstrap", "0", "--no-log",
                       "--results", str(bad))
    assert_one_line_error(code, err, str(bad), "--results")
    assert bad.read_text() == "a,b\n1,2\n"


def test_tensorboard_and_wandb_get_metrics_and_figures(trained, capsys, monkeypatch, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from wandb_records import summarize_run

    monkeypatch.chdir(tmp_path)
    config = wandb_config(trained, tmp_path, monkeypatch)
    code, out, err = cli(run_test_main, capsys, "--checkpoint", str(trained["best"]), "--config", str(config),
                         "--bootstrap", "50")
    assert code == 0, err
    (event_dir,) = (tmp_path / "tb" / "test").iterdir()
    acc = EventAccumulator(str(event_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("Metrics/Accuracy", "Metrics/Precision", "Metrics/Recall", "Metrics/F1_Score", "Metrics/AUC"):
        assert tag in scalars, tag
    assert {"ConfusionMatrix", "ROC_Curve", "PrecisionRecall_Curve"} <= set(acc.Tags()["images"])
    printed_f1 = float(re.search(r"\bf1\s+([0-9.]+)", out).group(1))
    assert acc.Scalars("Metrics/F1_Score")[0].value == pytest.approx(printed_f1, abs=1e-4)

    (run_file,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/*.wandb")
    run = summarize_run(run_file)
    assert run["job_type"] == "test" and run["name"] == "ev/final/test" and run["group"] == "ev"
    assert {"Metrics/Accuracy", "Metrics/AUC"} <= run["keys"]
    for figure in ("ConfusionMatrix", "ROC_Curve", "PrecisionRecall_Curve"):  # images log as <key>/path, ...
        assert any(k.startswith(f"{figure}/") for k in run["keys"]), figure
        (png,) = run_file.parent.glob(f"files/media/images/{figure}_*.png")
        assert_valid_png(png)


def test_data_with_one_class_is_evaluated(trained, capsys, tmp_path):
    frame = make_frame(n=60, seed=9)
    frame["label"] = 1.0
    path = tmp_path / "attacks_only.csv"
    frame.to_csv(path, index=False)
    code, out, err = cli(run_test_main, capsys, "--checkpoint", str(trained["best"]), "--data", str(path),
                         "--no-log", "--results", str(tmp_path / "r.csv"))
    assert code == 0, err
    assert re.search(r"auroc\s+n/a", out) and "one class only" in out
    assert re.search(r"recall\s+[0-9.]+", out)


# ------------------------------------------------------------------- bad input


def test_schema_mismatch_names_missing_and_extra_columns(trained, capsys, tmp_path):
    frame = make_frame(n=50, seed=1).drop(columns=["bytes", "protocol"])
    frame["ttl"] = 64
    path = tmp_path / "other_schema.csv"
    frame.to_csv(path, index=False)
    for main in (run_test_main, assess_main):
        code, _, err = cli(main, capsys, "--checkpoint", str(trained["best"]), "--data", str(path), "--no-log")
        line = assert_one_line_error(code, err, "missing bytes, protocol", "extra ttl")
        assert str(path) in line


def test_data_without_labels_points_to_batch_scoring(trained, capsys, tmp_path):
    path = tmp_path / "unlabelled.csv"
    make_frame(n=50).drop(columns=["label"]).to_csv(path, index=False)
    code, _, err = cli(run_test_main, capsys, "--checkpoint", str(trained["best"]), "--data", str(path), "--no-log")
    assert_one_line_error(code, err, "no label column 'label'", "against labels",
                          "predict.py")


@pytest.mark.parametrize("case", ["missing", "text", "foreign_torch", "empty_data", "no_data_file"])
def test_bad_checkpoint_or_data_is_one_line(trained, capsys, tmp_path, case):
    ckpt, data = str(trained["best"]), None
    if case == "missing":
        ckpt, needle = str(tmp_path / "nope.ckpt"), "checkpoint not found"
    elif case == "text":
        (tmp_path / "x.ckpt").write_text("hello")
        ckpt, needle = str(tmp_path / "x.ckpt"), "not a netad checkpoint"
    elif case == "foreign_torch":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.ckpt")
        ckpt, needle = str(tmp_path / "other.ckpt"), "not a netad checkpoint"
    elif case == "empty_data":
        (tmp_path / "empty.csv").write_text("")
        data, needle = str(tmp_path / "empty.csv"), "empty"
    else:
        data, needle = str(tmp_path / "absent.csv"), "not found"
    args = ["--checkpoint", ckpt, "--no-log"] + (["--data", data] if data else [])
    for main in (run_test_main, assess_main):
        code, _, err = cli(main, capsys, *args)
        assert_one_line_error(code, err, needle)


def test_assess_option_conflicts(trained, capsys):
    from netad.cli import main

    code, _, err = cli(main, capsys, "assess", "--run", str(trained["run"]))  # the package CLI: netad assess
    assert_one_line_error(code, err, "--run needs --use-folds")
    code, _, err = cli(assess_main, capsys, "--use-folds", "--data", str(trained["csv"]))
    assert_one_line_error(code, err, "--use-folds")
    code, _, err = cli(assess_main, capsys, "--run", str(trained["run"]))
    assert_one_line_error(code, err, "--run needs --use-folds")


# ------------------------------------------------------------------ assess_model.py


def check_report(out_dir: Path, expected: set[str]) -> str:
    written = {p.stem for p in out_dir.glob("*.png")}
    assert written == expected
    for name in expected:
        assert_valid_png(out_dir / f"{name}.png")
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    # self-contained: every figure is embedded as the very bytes of the PNG beside it, none is linked
    embedded = dict(re.findall(r"<figure id='(\w+)'><img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page))
    assert embedded.keys() == expected
    for name in expected:
        assert base64.b64decode(embedded[name]) == (out_dir / f"{name}.png").read_bytes(), name
        assert f"{name}.png</b>" in page, name
    assert len(re.findall(r"src='", page)) == len(expected)
    assert json.loads((out_dir / "metrics.json").read_text())["figures"].keys() == expected
    return page


def test_assess_checkpoint_writes_every_figure_and_logs_them(trained, capsys, monkeypatch, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    code, out, err = cli(assess_main, capsys, "--checkpoint", str(trained["best"]), "--bootstrap", "100")
    assert code == 0, err
    out_dir = tmp_path / "reports" / "ev_final"
    page = check_report(out_dir, set(FIGURES))  # the run's CV table gives fold_metrics too
    assert "Metrics by part" in page and "Folds: mean, std, min, max" in page and "bootstrap" in page
    assert "Majority-class accuracy" in page and "ROC AUC vs chance" in page
    saved = json.loads((out_dir / "metrics.json").read_text())
    parts = saved["tables"]["Metrics by part"]
    assert [row[0] for row in parts["rows"]] == ["train", "validation", "test"]
    assert saved["evaluation"]["metrics"] == evaluate_checkpoint(trained["best"], n_bootstrap=0).metrics

    tb_root = Path(trained["cfg"].logging.tensorboard_dir) / "assess"
    event_dir = max(tb_root.iterdir(), key=lambda p: p.stat().st_mtime)
    acc = EventAccumulator(str(event_dir), size_guidance={"images": 0})
    acc.Reload()
    assert {f"Assess/{name}" for name in FIGURES} <= set(acc.Tags()["images"])
    assert "Metrics/AUC" in acc.Tags()["scalars"]


def test_assess_folds_matches_the_cv_table(trained, capsys, tmp_path):
    out_dir = tmp_path / "folds_report"
    code, _, err = cli(assess_main, capsys, "--use-folds", "--checkpoint", str(trained["best"]),
                       "--output", str(out_dir), "--no-log")
    assert code == 0, err
    check_report(out_dir, set(FIGURES))
    saved = json.loads((out_dir / "metrics.json").read_text())
    folds = saved["tables"]["Folds"]
    assert len(folds["rows"]) == 3
    cv_rows = json.loads((trained["run"] / "cv_results.json").read_text())["folds"]
    for row, cv_row in zip(folds["rows"], cv_rows):
        got = dict(zip(folds["columns"], row))
        assert got["fold"] == cv_row["fold"]
        for key in ("accuracy", "f1", "auroc", "auprc", "fpr", "threshold"):
            assert got[key] == pytest.approx(cv_row[key], abs=1e-6), key
    stats = dict((r[0], r[1:]) for r in saved["tables"]["Folds: mean, std, min, max"]["rows"])
    aurocs = [r["auroc"] for r in cv_rows]
    assert stats["auroc"] == pytest.approx([np.mean(aurocs), np.std(aurocs, ddof=1), min(aurocs), max(aurocs)])
    # global importance per fold model on its own held-out rows, and its mean over the folds
    by_fold = saved["tables"]["Global importance by fold (mean |attribution|)"]
    assert by_fold["columns"] == ["column", "fold_0", "fold_1", "fold_2"]
    overall = saved["tables"]["Global importance"]
    means = {r[0]: r[1] for r in overall["rows"]}
    for row in by_fold["rows"]:
        assert means[row[0]] == pytest.approx(np.mean(row[1:]))
    assert [r[0] for r in overall["rows"]] == sorted(means, key=lambda c: -means[c])


def test_assess_single_split_run_has_no_fold_figure(tmp_path, csv_path, capsys):
    cfg = fast_config(tmp_path, csv_path)
    run_single(cfg, run_name="one", quiet=True)
    ckpt = Path(cfg.checkpoint.save_dir) / "best_model.ckpt"
    code, _, err = cli(assess_main, capsys, "--checkpoint", str(ckpt), "--output", str(tmp_path / "rep"),
                       "--no-log", "--bootstrap", "50")
    assert code == 0, err
    check_report(tmp_path / "rep", set(FIGURES) - {"fold_metrics"})
    code, _, err = cli(assess_main, capsys, "--use-folds", "--checkpoint", str(ckpt), "--no-log")
    assert_one_line_error(code, err, "no fold checkpoints")


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_assess_model_script_end_to_end(trained, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "assess_model.py"), "--checkpoint", str(trained["best"]),
                           "--output", str(tmp_path / "r"), "--no-log", "--bootstrap", "20"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    assert all((tmp_path / "r" / f"{name}.png").is_file() for name in FIGURES)
    assert not math.isnan(json.loads((tmp_path / "r" / "metrics.json").read_text())["evaluation"]["metrics"]["auroc"])


def test_assess_logs_figures_and_tables_to_wandb(trained, capsys, monkeypatch, tmp_path):
    from wandb_records import summarize_run

    config = wandb_config(trained, tmp_path, monkeypatch)
    code, out, err = cli(assess_main, capsys, "--checkpoint", str(trained["best"]), "--config", str(config),
                         "--output", str(tmp_path / "rep"), "--bootstrap", "20")
    assert code == 0, err
    (run_file,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/*.wandb")
    run = summarize_run(run_file)
    assert run["job_type"] == "assess" and run["group"] == "ev"
    for name in FIGURES:
        assert any(k.startswith(f"Assess/{name}/") for k in run["keys"]), name
    assert any(k.startswith("Metrics by part/") for k in run["keys"])
    assert "Metrics/AUC" in run["keys"]


def test_changed_training_file_is_refused(tmp_path, csv_path, capsys):
    cfg = fast_config(tmp_path, csv_path)
    run_single(cfg, run_name="chg", quiet=True)
    frame = make_frame()
    frame.iloc[::-1].to_csv(csv_path, index=False)  # same rows, another order: recorded indices would lie
    code, _, err = cli(run_test_main, capsys, "--checkpoint", str(tmp_path / "checkpoints" / "best_model.ckpt"),
                       "--no-log", "--bootstrap", "0", "--results", str(tmp_path / "r.csv"))
    assert_one_line_error(code, err, "is not the file this model was trained on")


# ------------------------------------------- operating point, cut-offs, report folders, flags


def crafted_csv(trained, path: Path, *, flagged_normal: int, unflagged_normal: int, anomalies: str,
                n_anomalies: int = 10) -> float:
    """A labelled CSV whose false-positive rate and ranking at the stored threshold are known exactly.

    Rows are picked by the model's own scores, each at least 1e-4 from the threshold (float noise is
    about 1e-7): ``flagged_normal`` normal rows above it, ``unflagged_normal`` below it, and anomalies
    all above it (``"high"``, a perfect ranking) or below every normal row (``"low"``, the worst one).
    Returns the stored threshold.
    """
    threshold = float(torch.load(trained["best"], weights_only=True)["netad"]["threshold"])
    frame = make_frame(n=3000, signal=1.5, seed=21)
    s = reference_scores(trained["best"], frame.drop(columns=["label"]))
    above = np.flatnonzero(s >= threshold + 1e-4)
    below = np.flatnonzero(s < threshold - 1e-4)
    below = below[np.argsort(s[below], kind="stable")[::-1]]  # highest first: the lowest ones can be anomalies
    assert len(above) >= flagged_normal + n_anomalies and len(below) >= unflagged_normal + n_anomalies
    normal = list(above[:flagged_normal]) + list(below[:unflagged_normal])
    anomaly = (list(above[flagged_normal:flagged_normal + n_anomalies]) if anomalies == "high"
               else list(below[-n_anomalies:]))
    rows = frame.iloc[normal + anomaly].copy()
    rows["label"] = [0.0] * len(normal) + [1.0] * len(anomaly)
    rows.to_csv(path, index=False)
    return threshold


def chance_and_operating_lines(out: str) -> tuple[str, str]:
    lines = out.splitlines()
    (i,) = [n for n, line in enumerate(lines) if line.startswith("ROC AUC vs chance")]
    return lines[i], lines[i + 1]


@pytest.mark.parametrize("flagged, percent, high", [(1, "5.0", False), (2, "10.0", False), (5, "25.0", True)])
def test_test_output_states_the_false_positive_rate(trained, capsys, tmp_path, flagged, percent, high):
    data = tmp_path / "rows.csv"
    threshold = crafted_csv(trained, data, flagged_normal=flagged, unflagged_normal=20 - flagged, anomalies="high")
    code, out, err = cli(run_test_main, capsys, "--model", str(trained["best"]), "--data", str(data), "--no-log",
                         "--bootstrap", "0", "--results", str(tmp_path / "r.csv"))
    assert code == 0, err
    _, line = chance_and_operating_lines(out)  # right under the chance verdict
    assert line.startswith(f"At the stored threshold {threshold:.4f} the model flags {percent} % of normal rows "
                           f"(false-positive rate)"), line
    assert HIGH_FPR == 0.10
    assert ("over 10 %" in line) is high  # exactly 10 % is not over
    assert ("threshold.method: target_fpr" in line and "threshold.target_fpr" in line and "retrain" in line) is high


def test_test_output_states_the_chance_cut_off(trained, capsys, tmp_path):
    for anomalies, expected in (
        ("high", r"ROC AUC vs chance: p < 0\.001 \(cut-off p < 0\.01, one-sided Mann-Whitney\): the model ranks "
                 r"anomalies above normal rows better than chance$"),
        ("low", r"ROC AUC vs chance: p = 1 \(not below the cut-off p < 0\.01, one-sided Mann-Whitney\): NO evidence "
                r"that the model ranks anomalies above normal rows better than chance$"),
    ):
        data = tmp_path / f"{anomalies}.csv"
        crafted_csv(trained, data, flagged_normal=0, unflagged_normal=10, anomalies=anomalies)
        code, out, err = cli(run_test_main, capsys, "--model", str(trained["best"]), "--data", str(data),
                             "--no-log", "--bootstrap", "0", "--results", str(tmp_path / "r.csv"))
        assert code == 0, err
        verdict, _ = chance_and_operating_lines(out)
        assert re.match(expected, verdict), verdict


def report_entry(page: str, key: str) -> str:
    (value,) = re.findall(rf"<dt>{re.escape(key)}</dt><dd>([^<]*)</dd>", page)
    return html.unescape(value)


def test_assess_report_states_operating_point_cut_off_and_cv_verdict(trained, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "weak rows (v2).csv"  # not filesystem-safe as a folder name
    threshold = crafted_csv(trained, data, flagged_normal=4, unflagged_normal=6, anomalies="low")
    code, out, err = cli(assess_main, capsys, "--model", str(trained["best"]), "--data", str(data), "--no-log",
                         "--bootstrap", "0", "--model-name", "<b>ev</b> & co")
    assert code == 0, err
    out_dir = tmp_path / "reports" / "b_ev_b_co_weak_rows_v2"
    assert f"Report: {out_dir.relative_to(tmp_path) / 'report.html'}" in out
    # copied alone, the page still shows every figure
    alone = tmp_path / "elsewhere" / "report.html"
    alone.parent.mkdir()
    alone.write_bytes((out_dir / "report.html").read_bytes())
    page = check_report(out_dir, set(FIGURES))
    assert "<b>ev</b>" not in page and "&lt;b&gt;ev&lt;/b&gt; &amp; co" in page  # every text is escaped
    operating = report_entry(page, "Operating point")
    assert operating.startswith(f"At the stored threshold {threshold:.4f} the model flags 40.0 % of normal rows "
                                f"(false-positive rate): over 10 %"), operating
    assert "threshold.method: target_fpr" in operating and "threshold.target_fpr" in operating
    chance = report_entry(page, "ROC AUC vs chance")
    assert "cut-off p < 0.01" in chance and "Mann-Whitney" in chance
    assert chance.endswith("NOT distinguishable from chance"), chance
    verdict = json.loads((trained["run"] / "cv_results.json").read_text())["verdict"]["message"]
    assert report_entry(page, "Cross-validation verdict") == verdict
    assert json.loads((out_dir / "metrics.json").read_text())["info"]["Cross-validation verdict"] == verdict


def test_each_evaluation_gets_its_own_default_report_folder(trained, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "other.csv"
    make_frame(n=80, signal=1.5, seed=5).to_csv(data, index=False)
    runs = {"ev_final": [], "ev_final_other": ["--data", str(data)], "ev_folds": ["--use-folds"]}
    for args in runs.values():
        code, _, err = cli(assess_main, capsys, "--model", str(trained["best"]), "--no-log", "--bootstrap", "0",
                           "--quiet", *args)
        assert code == 0, err
    assert {p.name for p in (tmp_path / "reports").iterdir()} == set(runs)
    sources = {name: json.loads((tmp_path / "reports" / name / "metrics.json").read_text())["info"]["Evaluation rows"]
               for name in runs}
    assert sources["ev_final"].endswith("(test hold-out)") and sources["ev_final_other"] == str(data)
    assert sources["ev_folds"].startswith("each fold model")
    folds_page = (tmp_path / "reports" / "ev_folds" / "report.html").read_text(encoding="utf-8")
    assert report_entry(folds_page, "Operating point").startswith("At each fold's stored threshold (mean ")
    assert report_entry(folds_page, "Cross-validation verdict") == json.loads(
        (trained["run"] / "cv_results.json").read_text())["verdict"]["message"]


def test_fold_and_single_split_checkpoints_say_where_their_verdict_is(trained, capsys, tmp_path, csv_path):
    code, _, err = cli(assess_main, capsys, "--model", str(trained["run"] / "fold_0" / "best.ckpt"), "--no-log",
                       "--bootstrap", "0", "--output", str(tmp_path / "fold0"))
    assert code == 0, err
    page = (tmp_path / "fold0" / "report.html").read_text(encoding="utf-8")  # a fold's checkpoint: from its run
    assert report_entry(page, "Cross-validation verdict") == json.loads(
        (trained["run"] / "cv_results.json").read_text())["verdict"]["message"]

    cfg = fast_config(tmp_path, csv_path)
    run_single(cfg, run_name="solo", quiet=True)
    code, _, err = cli(assess_main, capsys, "--model", str(Path(cfg.checkpoint.save_dir) / "best_model.ckpt"),
                       "--no-log", "--bootstrap", "0", "--output", str(tmp_path / "solo"))
    assert code == 0, err
    page = (tmp_path / "solo" / "report.html").read_text(encoding="utf-8")
    assert report_entry(page, "Cross-validation verdict").startswith("Not cross-validated")


@pytest.mark.parametrize("value", ["10000000", "-1", str(MAX_BOOTSTRAP + 1)])
def test_bootstrap_count_out_of_range_is_refused(trained, capsys, tmp_path, value):
    for main in (run_test_main, assess_main):
        code, _, err = cli(main, capsys, "--model", str(trained["best"]), "--no-log", "--bootstrap", value,
                           "--output" if main is assess_main else "--results", str(tmp_path / "x"))
        assert_one_line_error(code, err, f"--bootstrap {value}", "0", "100000")
    assert not (tmp_path / "x").exists()
    assert check_bootstrap(MAX_BOOTSTRAP) == MAX_BOOTSTRAP and check_bootstrap(0) == 0


def test_set_overrides_the_config_that_reads_the_data(trained, capsys, monkeypatch, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tmp_path / "renamed.csv"
    make_frame(n=60, seed=4).rename(columns={"label": "attack"}).to_csv(data, index=False)
    base = ["--model", str(trained["best"]), "--data", str(data), "--bootstrap", "0"]
    results = ["--results", str(tmp_path / "r.csv")]
    code, _, err = cli(run_test_main, capsys, *base, *results, "--no-log")
    assert_one_line_error(code, err, "no label column 'label'")
    code, out, err = cli(run_test_main, capsys, *base, *results, "--set", "data.label_column=attack",
                         "--set", f"logging.tensorboard_dir={tmp_path / 'tb_set'}", "--quiet")
    assert code == 0, err
    assert re.search(r"renamed\.csv: 60 rows", out)
    assert list((tmp_path / "tb_set" / "test").iterdir())  # the second --set applied too
    # with --config the overrides apply to that file
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(trained["cfg"].to_dict()))
    code, _, err = cli(run_test_main, capsys, *base, *results, "--no-log", "--config", str(config),
                       "--set", "data.label_column=attack")
    assert code == 0, err
    code, _, err = cli(run_test_main, capsys, *base, *results, "--no-log", "--set", "data.nope=1")
    assert_one_line_error(code, err, "unknown config key 'data.nope'")

    code, out, err = cli(assess_main, capsys, *base, "--set", "data.label_column=attack", "--set",
                         f"logging.tensorboard_dir={tmp_path / 'tb_assess'}", "--output", str(tmp_path / "rep"))
    assert code == 0, err
    (event_dir,) = (tmp_path / "tb_assess" / "assess").iterdir()
    acc = EventAccumulator(str(event_dir), size_guidance={"images": 0})
    acc.Reload()
    assert "Assess/roc_curve" in acc.Tags()["images"]


def test_quiet_turns_progress_off(trained, capsys, monkeypatch, tmp_path):
    import netad.metrics as metrics

    seen = []
    real = metrics.bootstrap_ci

    def spy(*args, **kwargs):
        seen.append(kwargs.get("progress"))
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics, "bootstrap_ci", spy)
    args = ["--model", str(trained["best"]), "--no-log", "--bootstrap", "5"]
    for quiet in ([], ["--quiet"]):
        code, _, err = cli(run_test_main, capsys, *args, "--results", str(tmp_path / "r.csv"), *quiet)
        assert code == 0, err
        code, out, err = cli(assess_main, capsys, *args, "--output", str(tmp_path / "rep"), *quiet)
        assert code == 0, err
        assert ("Scoring ev/final" in out) is not bool(quiet)
        assert "report.html" in out  # the result is still said
    assert seen == [True, True, False, False]
