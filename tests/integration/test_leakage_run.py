"""The leakage check in a run: warned before training and after the fold table, kept in the run folder and
every checkpoint, shown in the model card; ``error`` stops before anything is written; ``off`` records nothing."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import fast_config, make_frame
from netad.errors import UserError
from netad.export.artifact import export_checkpoint
from netad.training.cv import run_cv
from netad.training.report import cv_summary


@pytest.fixture
def leaky_csv(tmp_path):
    frame = make_frame(n=400, seed=6)
    frame["verdict"] = np.where(frame["label"] == 1, "attack", "benign")  # the label in words
    path = tmp_path / "leaky.csv"
    frame.to_csv(path, index=False)
    return path


def test_findings_are_warned_kept_and_carried_to_the_model_card(tmp_path, leaky_csv, caplog):
    cfg = fast_config(tmp_path, leaky_csv, cross_validation__permutation_baseline="false")
    with caplog.at_level(logging.WARNING, logger="netad"):
        result = run_cv(cfg, run_name="leaky", quiet=True)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("leakage check:")]
    assert len(warned) == 1 and "column 'verdict' alone separates the labels" in warned[0]
    saved = json.loads((result.run_dir / "leakage_check.json").read_text())
    assert saved["setting"] == "warn" and [f["column"] for f in saved["findings"]] == ["verdict"]
    message = saved["findings"][0]["message"]
    assert json.loads((result.run_dir / "cv_results.json").read_text())["leakage"] == [message]
    assert f"Leakage check: {message}" in cv_summary(result)
    for fit in ("fold_0", "final"):
        meta = torch.load(result.run_dir / fit / "best.ckpt", weights_only=True)["netad"]["metadata"]
        assert meta["leakage"] == [message]
    evaluation = (result.run_dir / "evaluation_card.md").read_text()
    assert f"- **{message}**" in evaluation and "the leakage check found 1 problem (above)" in evaluation
    assert "stratified by label, so a held-out attack type occurs in the fold's training rows unless it is rare" in evaluation
    card = (export_checkpoint(result.final_checkpoint, tmp_path / "export") / "README.md").read_text()
    assert f"**Warning:** {message}" in card
    assert "## Evaluation card" in card and "### Checklist (after Arp et al., USENIX Security 2022)" in card


def test_error_stops_before_the_run_folder_exists(tmp_path, leaky_csv):
    cfg = fast_config(tmp_path, leaky_csv, data__leakage_check="error")
    with pytest.raises(UserError, match="leakage check: column 'verdict' alone separates the labels"):
        run_cv(cfg, run_name="stopped", quiet=True)
    assert not (tmp_path / "checkpoints" / "stopped").exists()


def test_off_records_nothing_and_a_clean_run_says_so_in_the_card(tmp_path, leaky_csv, csv_path):
    off = run_cv(fast_config(tmp_path / "off", leaky_csv, data__leakage_check="off",
                             cross_validation__permutation_baseline="false"), run_name="off", quiet=True)
    assert not (off.run_dir / "leakage_check.json").exists() and off.leakage is None
    off_card = (export_checkpoint(off.final_checkpoint, tmp_path / "e1") / "README.md").read_text()
    assert "\n## Leakage check\n" not in off_card and "Off (`data.leakage_check: off`)." in off_card
    clean = run_cv(fast_config(tmp_path / "clean", csv_path, cross_validation__permutation_baseline="false"),
                   run_name="clean", quiet=True)
    assert clean.leakage == []
    card = (export_checkpoint(clean.final_checkpoint, tmp_path / "e2") / "README.md").read_text()
    assert "\n## Leakage check\n" in card and "no column alone separated the labels" in card
