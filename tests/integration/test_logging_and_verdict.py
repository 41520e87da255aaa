"""W&B offline runs, and a verdict that tells signal from no signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import fast_config, make_frame
from netad.data.loading import load_table
from netad.training.cv import run_cv


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_wandb_writes_offline_runs_without_credentials(tmp_path, csv_path, monkeypatch, mode):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no cached login
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = fast_config(tmp_path, csv_path, logging__use_wandb="true", logging__wandb_mode=mode,
                      cross_validation__n_splits="2", training__num_epochs="1")
    if mode == "online":
        with pytest.warns(UserWarning, match="offline"):
            run_cv(cfg, run_name="wb", quiet=True)
    else:
        run_cv(cfg, run_name="wb", quiet=True)
    runs = sorted((Path(cfg.logging.wandb_dir) / "wandb").glob("offline-run-*"))
    # one run per fold, the final model, and the summary
    assert len(runs) == 2 + 1 + 1
    for run in runs:
        assert list(run.glob("*.wandb")), f"no run file in {run}"
    assert not list((Path(cfg.logging.wandb_dir) / "wandb").glob("run-*")), "an online run was started"


def test_verdict_no_signal_vs_signal(tmp_path):
    verdicts = {}
    for signal in (0.0, 3.0):
        path = tmp_path / f"signal_{signal}.csv"
        make_frame(n=400, signal=signal, seed=3).to_csv(path, index=False)
        cfg = fast_config(tmp_path / str(signal), path, cross_validation__permutation_baseline="true",
                          training__num_epochs="15", training__learning_rate="0.01")
        result = run_cv(cfg, run_name="v", quiet=True)
        verdicts[signal] = result

    none, strong = verdicts[0.0], verdicts[3.0]
    assert none.verdict["beats_chance"] is False
    assert "does NOT beat chance" in none.verdict["message"]
    assert strong.verdict["beats_chance"] is True
    assert strong.summary["auroc"]["mean"] > 0.9

    # the baselines ran on the same folds
    perm = strong.baselines["permutation"]
    assert len(perm["folds"]) == 3
    assert perm["summary"]["auroc"]["mean"] < strong.summary["auroc"]["mean"] - 0.2
    table = load_table(fast_config(tmp_path, tmp_path / "signal_3.0.csv").data)
    import json

    splits = json.loads((Path(strong.run_dir) / "splits.json").read_text())
    for row, fold in zip(strong.baselines["majority"]["folds"], splits["folds"]):
        assert row["accuracy"] == pytest.approx(1 - np.mean(table.labels[fold["eval"]]))
        assert row["auroc"] == pytest.approx(0.5)

    # what the permutation models estimate, with their spread; and the operating point
    values = [row["auroc"] for row in perm["folds"]]
    note = strong.verdict["permutation_models"]
    assert f"from {min(values):.3f} to {max(values):.3f}" in note and all(f"{v:.3f}" in note for v in values)
    assert "rests on the Mann-Whitney test" in note
    assert "cut-off p < 0.01" in strong.verdict["message"]
    fpr = strong.summary["fpr"]["mean"]
    assert f"{100 * fpr:.1f} % of normal rows" in strong.verdict["operating_point"]


@pytest.mark.parametrize("fpr, warned", [(0.05, False), (0.10, False), (0.31, True)])
def test_the_cv_verdict_states_the_false_positive_rate_and_the_remedy_when_high(fpr, warned):
    from netad.training.baselines import verdict

    auroc = {"mean": 0.9, "std": 0.01, "min": 0.89, "max": 0.91}
    test = {"observed": 0.9, "mean": 0.5, "std": 0.03, "p_value": 1e-9}
    said = verdict(auroc, test, None, 0.8, 0.95, fpr)
    assert f"{100 * fpr:.1f} % of normal rows" in said["operating_point"]
    assert ("threshold.method: target_fpr" in said["operating_point"]) is warned
    assert "permutation_models" not in said


def test_quiet_training_with_wandb_says_nothing_on_stderr(tmp_path, cfg, capfd):
    """--quiet: results on stdout, and no third-party notes (W&B's deprecation note on every run) on stderr."""
    import yaml

    from netad.cli import train_main

    cfg.logging.use_wandb = True
    cfg.cross_validation.n_splits = 2
    cfg.training.num_epochs = 1
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    capfd.readouterr()
    assert train_main(["--config", str(config), "--use-cv", "--quiet", "--run-name", "q"]) == 0
    out, err = capfd.readouterr()
    # nothing but the project's own warnings (said once per process, so perhaps by an earlier test)
    assert all(line.startswith("warning: ") for line in err.splitlines()) and "wandb" not in err, err
    assert "Results:" in out
    assert list((Path(cfg.logging.wandb_dir) / "wandb").glob("offline-run-*"))


def test_a_high_false_positive_rate_under_target_fpr_points_at_the_data_not_the_setting():
    from netad.training.baselines import verdict

    auroc = {"mean": 0.9, "std": 0.01, "min": 0.89, "max": 0.91}
    test = {"observed": 0.9, "mean": 0.5, "std": 0.03, "p_value": 1e-9}
    line = verdict(auroc, test, None, 0.8, 0.95, 0.31, threshold_method="target_fpr")["operating_point"]
    assert "although the threshold was chosen for threshold.target_fpr" in line and "set threshold.method" not in line
