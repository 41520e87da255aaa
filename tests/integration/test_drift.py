"""netad drift: the training-data summary a model carries, quiet on a sample of its training rows, loud on a
shifted copy, and one-line errors for input it cannot compare."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import fast_config, make_frame
from netad.cli import drift_main
from netad.evaluation.drift import counts_drift, numeric_drift, psi
from netad.data.summary import numeric_summary
from netad.training.cv import run_single
from test_evaluation import assert_one_line_error, cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    csv_path = root / "traffic.csv"
    frame = make_frame(n=2000, seed=9)
    frame.to_csv(csv_path, index=False)
    run_single(fast_config(root, csv_path), run_name="d", quiet=True)
    return {"root": root, "csv": csv_path, "frame": frame, "ckpt": root / "checkpoints" / "best_model.ckpt"}


def test_the_checkpoint_carries_a_summary_without_rows_or_extremes(trained):
    summary = torch.load(trained["ckpt"], weights_only=True)["netad"]["data_summary"]
    assert set(summary["columns"]) == {"packet_size", "inter_arrival_time", "bytes", "is_tcp", "protocol"}
    size = summary["columns"]["packet_size"]
    values = trained["frame"]["packet_size"]
    assert values.min() not in size["ks_points"] and values.max() not in size["ks_points"] + size["edges"]
    assert len(size["edges"]) == 9 and sum(size["bins"]) == summary["rows"] < len(values)  # training rows only
    assert set(summary["columns"]["protocol"]["counts"]) == {"tcp", "udp", "icmp", "(other)"}
    assert summary["flagged"]["rows"] > 0 and summary["score"]["rows_from"] == "validation rows"


def test_quiet_on_a_sample_of_the_training_file(trained, tmp_path, capsys):
    sample = tmp_path / "sample.csv"
    trained["frame"].sample(600, random_state=1).drop(columns=["label"]).to_csv(sample, index=False)
    code, out, err = cli(drift_main, capsys, "--model", str(trained["ckpt"]), "--input", str(sample),
                         "--output", str(tmp_path / "r"), "--fail-on-drift")
    assert code == 0, err
    assert "no column drifted" in out and "score stable" in out
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert report["drifted"] == [] and max(c["psi"] for c in report["columns"]) < 0.1
    assert (tmp_path / "r" / "drift.png").stat().st_size > 2000
    assert pd.read_csv(tmp_path / "r" / "drift.csv")["column"].tolist()[-1] == "(score)"


def test_loud_on_a_shifted_copy(trained, tmp_path, capsys):
    shifted = trained["frame"].sample(600, random_state=2).drop(columns=["label"])
    shifted["inter_arrival_time"] += 6.0  # three training standard deviations
    shifted["protocol"] = np.where(np.arange(len(shifted)) % 4 == 0, "quic", "icmp")  # a new protocol, too
    path = tmp_path / "shifted.csv"
    shifted.to_csv(path, index=False)
    code, out, err = cli(drift_main, capsys, "--model", str(trained["ckpt"]), "--input", str(path),
                         "--output", str(tmp_path / "r"), "--quiet")
    assert code == 0, err  # drift is a finding, not an error
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("2 of 5 columns drifted:") and "inter_arrival_time" in verdict and "protocol" in verdict
    report = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert set(report["drifted"]) == {"inter_arrival_time", "protocol"}
    code, _, _ = cli(drift_main, capsys, "--model", str(trained["ckpt"]), "--input", str(path),
                     "--output", str(tmp_path / "r"), "--quiet", "--fail-on-drift")
    assert code == 1


def test_input_it_cannot_compare_is_one_line(trained, tmp_path, capsys):
    from netad.export.artifact import export_checkpoint

    other = tmp_path / "other.csv"
    trained["frame"].drop(columns=["bytes", "protocol"]).to_csv(other, index=False)
    empty, header_only = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    trained["frame"].head(0).to_csv(header_only, index=False)
    for path, needle in ((other, "lacks columns the model reads: bytes, protocol"), (empty, "input file is empty"),
                         (header_only, "holds no rows"), (tmp_path / "nope.csv", "input file not found")):
        code, _, err = cli(drift_main, capsys, "--model", str(trained["ckpt"]), "--input", str(path),
                           "--output", str(tmp_path / "r"))
        assert_one_line_error(code, err, needle)
    folder = export_checkpoint(trained["ckpt"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["data_summary"]["columns"]["packet_size"]["kind"] == "numeric"
    del config["data_summary"]
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = cli(drift_main, capsys, "--model", str(folder), "--input", str(trained["csv"]))
    assert_one_line_error(code, err, "no training-data summary", "train it again")


def test_the_tests_agree_with_scipy():
    from scipy.stats import chi2_contingency, ks_2samp

    rng = np.random.default_rng(0)
    train, new = rng.normal(0, 1, 20_000), rng.normal(0.1, 1, 5_000)
    found = numeric_drift(numeric_summary(train), new)
    exact = ks_2samp(train, new)
    assert found["statistic"] == pytest.approx(exact.statistic, abs=0.01)  # the CDF at 99 points, not every value
    assert found["p_value"] < 1e-6 and exact.pvalue < 1e-6
    same = numeric_drift(numeric_summary(train), rng.normal(0, 1, 5_000))
    assert same["psi"] < 0.01 and same["p_value"] > 0.01
    a, b = {"x": 500, "y": 300, "z": 200}, {"x": 90, "y": 60, "z": 50, "w": 5}
    got = counts_drift(a, b)
    ref = chi2_contingency(np.array([[500, 300, 200, 0], [90, 60, 50, 5]]), correction=False)
    assert got["statistic"] == pytest.approx(ref.statistic) and got["p_value"] == pytest.approx(ref.pvalue)
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0 and psi([10, 20, 30], [30, 20, 10]) > 0.5
