"""Cross-validation by attack type end to end: each fold's model is measured on types it never saw, the
checkpoints record the types they saw, and test.py splits recall into seen and unseen types from that record."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import fast_config, typed_frame
from netad.data.loading import file_digest, load_table
from netad.evaluation.assess import assess_checkpoint
from netad.evaluation.evaluate import evaluate_checkpoint, format_test_result
from netad.training.cv import compute_splits, run_cv


def test_by_type_cv_measures_unseen_types_and_test_py_knows_which_types_the_model_saw(tmp_path):
    path = tmp_path / "typed.csv"
    typed_frame(n=500, seed=4).to_csv(path, index=False)
    cfg = fast_config(tmp_path, path, data__type_column="attack_cat", cross_validation__strategy="by_type")
    result = run_cv(cfg, run_name="bt", quiet=True)
    table = load_table(cfg.data)

    saved = json.loads((result.run_dir / "cv_results.json").read_text())
    kinds = saved["attack_types"]
    assert kinds["seen_rows"] == 0 and kinds["unseen_rows"] == sum(e["rows"] for e in kinds["types"]) > 0
    assert all(e["seen"] is False for e in kinds["types"])
    assert all(np.isnan(row["seen_recall"]) and 0 <= row["unseen_recall"] <= 1 for row in result.folds)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv", keep_default_na=False)
    attack = oof[oof["label"] == 1]
    assert (attack["seen"] == 0).all() and set(attack["type"]) == {e["type"] for e in kinds["types"]}
    by_type = pd.read_csv(result.run_dir / "type_recall.csv")
    assert by_type["rows"].sum() == len(attack)
    for e in kinds["types"]:  # the pooled recall is the share of that type's out-of-fold rows flagged
        rows = attack[attack["type"] == e["type"]]
        assert e["recall"] == rows["prediction"].mean()

    card = (result.run_dir / "evaluation_card.md").read_text()
    assert result.files["evaluation_card"] == str(result.run_dir / "evaluation_card.md")
    assert f"sha256 `{file_digest(path)}`" in card and "strategy `by_type`: each attack type's rows held out" in card
    assert f"on types it never saw: {kinds['unseen_recall']:.3f} ({kinds['unseen_rows']} rows)" in card
    for pitfall in ("Sampling bias", "Data snooping", "Spurious correlations", "Biased parameter selection",
                    "Inappropriate baselines", "Inappropriate measures", "Base-rate fallacy"):
        assert f"- **{pitfall}.**" in card
    assert "estimate how the model does on attacks it never saw" in card

    for k in range(cfg.cross_validation.n_splits):
        ckpt = torch.load(result.run_dir / f"fold_{k}" / "best.ckpt", weights_only=True)
        meta = ckpt["netad"]["metadata"]
        fit = np.concatenate([meta["train_indices"].numpy(), meta["val_indices"].numpy()])
        assert meta["seen_types"] == sorted(set(table.types[fit][table.labels[fit] == 1]))

    # test.py on a file of new rows: types the final model trained on are seen, the new one is not
    final = torch.load(result.final_checkpoint, weights_only=True)["netad"]["metadata"]["seen_types"]
    new = typed_frame(n=300, seed=9)
    new.loc[new["label"] == 1, "attack_cat"] = np.where(np.arange((new["label"] == 1).sum()) % 3 == 0,
                                                        "brand_new", new.loc[new["label"] == 1, "attack_cat"])
    new.to_csv(tmp_path / "new.csv", index=False)
    tested = evaluate_checkpoint(result.final_checkpoint, tmp_path / "new.csv", n_bootstrap=0)
    found = {e["type"]: e for e in tested.attack_types["types"]}
    assert found["brand_new"]["seen"] is False
    assert all(found[t]["seen"] == (t in final) for t in found)
    flagged = tested.scores >= tested.threshold
    unseen = (new["label"] == 1).to_numpy() & ~new["attack_cat"].isin(final).to_numpy()
    assert tested.attack_types["unseen_rows"] == unseen.sum()
    assert tested.attack_types["unseen_recall"] == flagged[unseen].mean()
    assert "brand_new" in format_test_result(tested) and "unseen-type recall" in format_test_result(tested)

    # assess_model.py: a figure of recall per type, seen apart from never seen
    report = assess_checkpoint(result.final_checkpoint, data_path=tmp_path / "new.csv", output=tmp_path / "report",
                               n_bootstrap=0, log=False, progress=False)
    assert report.figures["type_recall"].is_file() and report.evaluation.attack_types == tested.attack_types
    assert "Recall per attack type" in report.report.read_text()


def test_compare_reports_seen_and_unseen_type_recall_per_detector(tmp_path):
    from netad.evaluation.compare import format_leaderboard, run_compare

    path = tmp_path / "typed.csv"
    typed_frame(n=400, seed=5).to_csv(path, index=False)
    new = typed_frame(n=200, seed=8)
    new.to_csv(tmp_path / "new.csv", index=False)
    cfg = fast_config(tmp_path, path, data__type_column="attack_cat", cross_validation__strategy="by_type")
    result = run_compare(cfg, detectors=["classifier", "pca"], test_data=tmp_path / "new.csv",
                         output=tmp_path / "o", log=False)
    table = load_table(cfg.data)
    _, _, folds = compute_splits(cfg, table)
    for row in result.folds:  # by_type: every held-out attack type is new to the fold's detector
        assert np.isnan(row["seen_recall"]) and 0 <= row["unseen_recall"] <= 1
        fold = folds[row["fold"]]
        assert not set(table.types[fold.eval][table.labels[fold.eval] == 1]) & set(
            table.types[fold.train][table.labels[fold.train] == 1])
        assert 0 <= row["test_seen_recall"] <= 1  # the new file's types all occur in the training file
    assert all("unseen_recall_mean" in e for e in result.leaderboard)
    assert "unseen rec" in format_leaderboard(result)


def test_by_type_folds_as_jobs_and_a_resume_give_the_results_of_one_run(tmp_path):
    from conftest import Crash, CrashAtEpoch

    path = tmp_path / "typed.csv"
    typed_frame(n=400, seed=6).to_csv(path, index=False)
    settings = {"data__type_column": "attack_cat", "cross_validation__strategy": "by_type",
                "cross_validation__train_final_model": "false"}
    one = run_cv(fast_config(tmp_path / "one", path, **settings), run_name="r", quiet=True)

    jobs = fast_config(tmp_path / "jobs", path, **settings)
    for k in (2, 0, 1):  # a job array, out of order
        assert run_cv(jobs, run_name="r", only_fold=k, quiet=True) is None
    gathered = run_cv(jobs, run_name="r", gather=True, quiet=True)

    crashed = fast_config(tmp_path / "crash", path, **settings)
    with pytest.raises(Crash):
        run_cv(crashed, run_name="r", quiet=True,
               extra_callbacks=lambda name: [CrashAtEpoch(1)] if name == "fold_1" else [])
    resumed = run_cv(None, resume=tmp_path / "crash" / "checkpoints" / "r", quiet=True)

    for other in (gathered, resumed):
        assert other.folds == one.folds and other.attack_types == one.attack_types
        assert other.verdict["message"] == one.verdict["message"]


def test_the_fold_table_leaves_out_a_type_column_without_values(tmp_path):
    from netad.training.report import format_table

    path = tmp_path / "typed.csv"
    typed_frame(n=300, seed=7).to_csv(path, index=False)
    cfg = fast_config(tmp_path, path, data__type_column="attack_cat", cross_validation__strategy="by_type",
                      cross_validation__train_final_model="false")
    header = format_table(run_cv(cfg, run_name="t", quiet=True)).splitlines()[0].split()
    assert "unseen_recall" in header and "seen_recall" not in header  # by_type: no fold holds a seen type
