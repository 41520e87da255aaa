"""train.py --select: the hybrid's detector, budget and rule chosen by by_type CV on development rows only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from conftest import fast_config, typed_frame
from netad.cli import train_main
from netad.config import load_config
from netad.data.preprocessing import TabularPreprocessor
from netad.inference import NetadPredictor
from netad.training.runs import load_splits, RunFolder
from netad.data.loading import load_table
from netad.training.select import run_select


def select_config(tmp_path, **extra):
    path = tmp_path / "typed.csv"
    typed_frame(n=500, seed=4).to_csv(path, index=False)
    sets = dict(data__type_column="attack_cat", selection__detectors="[pca, kmeans]", selection__budgets="[0.02, 0.1]",
                detectors__params="{pca: {variance: 0.5}}")
    return fast_config(tmp_path, path, **dict(sets, **extra))


def test_selection_reads_no_test_row_and_trains_the_chosen_model(tmp_path, monkeypatch):
    seen: list[np.ndarray] = []
    encode = TabularPreprocessor.encode

    def spy(self, frame):  # every raw row any model or detector of the run scores passes here
        seen.append(frame.index.to_numpy())
        return encode(self, frame)

    monkeypatch.setattr(TabularPreprocessor, "encode", spy)
    cfg = select_config(tmp_path)
    result = run_select(cfg, run_name="sel", quiet=True, write_config=tmp_path / "chosen.yaml")
    splits = load_splits(RunFolder(result.run_dir), load_table(cfg.data))
    test = set(splits.test.tolist())
    assert seen and not test & set(np.concatenate(seen).tolist()), "selection scored rows of the test hold-out"

    # every candidate, on by_type folds: classifier, or per detector and budget, stack per detector
    names = [c.name for c in result.candidates]
    assert names == ["classifier", "or pca @ 0.02", "or pca @ 0.1", "or kmeans @ 0.02", "or kmeans @ 0.1",
                     "stack pca", "stack kmeans"]
    assert result.strategy == "by_type"
    best = max(c.summary["auroc"]["mean"] for c in result.candidates)
    assert result.chosen.summary["auroc"]["mean"] == best
    table = pd.read_csv(result.files["selection_csv"])
    assert table["candidate"].tolist() == names
    np.testing.assert_allclose(table["auroc_mean"], [c.summary["auroc"]["mean"] for c in result.candidates])
    evidence = json.loads((result.run_dir / "selection.json").read_text())
    assert evidence["chosen"] == result.chosen.name and evidence["rows"]["test_hold_out"].endswith("never read")

    # a fold's "or" figure is the fold model's hybrid rule at the budget's cut on its normal validation rows
    cand = result.candidates[names.index("or kmeans @ 0.1")]
    assert all(0.0 <= f["fpr"] <= 1.0 for f in cand.folds) and len(cand.folds) == 3
    # stacking's fold figures are cross-fitted; its final weights are learned on every fold
    stack = result.candidates[names.index("stack kmeans")]
    assert set(stack.stack_weights) == {"logit", "novelty", "bias"}

    # the chosen config is valid, retrains the same choice, and the final model is that model
    chosen = load_config(tmp_path / "chosen.yaml")
    assert chosen.model.type == ("classifier" if result.chosen.rule == "classifier" else "hybrid")
    assert (tmp_path / "chosen.yaml").read_text() == (result.run_dir / "selected_config.yaml").read_text()
    assert chosen.cross_validation.strategy == "stratified"  # the request's own strategy, kept
    model = NetadPredictor.from_checkpoint(result.final_checkpoint)
    assert (model.novelty is None) == (result.chosen.rule == "classifier")
    meta = torch.load(result.final_checkpoint, weights_only=True)["netad"]["metadata"]
    assert meta["selection"]["chosen"] == result.chosen.name
    assert not set(meta["train_indices"].tolist()) & test and not set(meta["val_indices"].tolist()) & test
    card = (result.run_dir / "evaluation_card.md").read_text()
    assert "## Model selection (`train.py --select`)" in card and f"**{result.chosen.name}**" in card
    assert "were chosen on the by_type folds' held-out rows" in card


def test_a_forced_stack_choice_trains_a_stacked_final_model(tmp_path):
    cfg = select_config(tmp_path, selection__combine="[stack]", selection__include_classifier="false",
                        selection__detectors="[kmeans]")
    result = run_select(cfg, run_name="st", quiet=True)
    assert [c.name for c in result.candidates] == ["stack kmeans"] and result.chosen.rule == "stack"
    saved = torch.load(result.final_checkpoint, weights_only=True)["netad"]
    assert saved["novelty"]["fusion"] == {"rule": "stack", "weights": result.chosen.stack_weights}
    assert result.config.hybrid.combine == "stack"


def test_select_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "plain.csv"
    typed_frame(n=200, seed=1).drop(columns=["attack_cat"]).to_csv(path, index=False)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data:\n  data_path: {path}\ncheckpoint:\n  save_dir: {tmp_path / 'ck'}\n"
                        "logging:\n  use_wandb: false\n")
    for argv, needle in ((["--select"], "set data.type_column"),
                         (["--select", "--use-cv", "--fold", "0"], "--fold and --gather do not apply"),
                         (["--write-config", "x.yaml"], "--write-config needs --select")):
        capsys.readouterr()
        code = train_main(["--config", str(cfg_file), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], err
