"""Out-of-core training (data.in_memory: false): the same preprocessing and the same kind of results as in memory
(the batches differ: block shuffling), deterministic run to run, resumable, and the files cleaned up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import Crash, CrashAtEpoch, fast_config, make_frame
from netad.config import load_config
from netad.data.leakage import leakage_findings, streamed_leakage_findings
from netad.data.loading import load_table
from netad.data.streaming import load_streamed
from netad.errors import UserError
from netad.metrics import compute_metrics
from netad.models.checkpoint import CHECKPOINT_KEY
from netad.training.cv import run_cv


def _parquet(frame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=500)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ooc")
    frame = make_frame(n=2400, seed=21)
    source = _parquet(frame, tmp / "traffic.parquet")
    out = {"frame": frame, "source": source, "tmp": tmp}
    for name, in_memory in (("memory", "true"), ("disk", "false"), ("disk_again", "false")):
        cfg = fast_config(tmp / name, source, data__in_memory=in_memory, training__num_epochs="4")
        out[name] = run_cv(cfg, run_name="r", quiet=True)
        out[name + "_cfg"] = cfg
    return out


def _fold_checkpoint(result, fold: int) -> dict:
    return torch.load(Path(result.run_dir) / f"fold_{fold}" / "best.ckpt", weights_only=False)


def test_the_fold_preprocessing_and_drift_summary_are_the_in_memory_ones(runs):
    for fold in range(3):
        memory = _fold_checkpoint(runs["memory"], fold)[CHECKPOINT_KEY]
        disk = _fold_checkpoint(runs["disk"], fold)[CHECKPOINT_KEY]
        a, b = memory["preprocessor"], disk["preprocessor"]
        assert {k: v for k, v in a.items() if k != "numeric"} == {k: v for k, v in b.items() if k != "numeric"}
        for key in ("columns", "impute", "log"):
            assert a["numeric"][key] == b["numeric"][key]
        for key in ("center", "scale"):  # the scaler summed block by block
            np.testing.assert_allclose(b["numeric"][key], a["numeric"][key], rtol=1e-12)
        assert memory["data_summary"]["columns"] == disk["data_summary"]["columns"]  # the sample is every row here


def test_results_differ_from_in_memory_only_by_the_batches_and_repeat_exactly(runs):
    memory, disk, again = (json.loads((Path(runs[n].run_dir) / "cv_results.json").read_text())
                           for n in ("memory", "disk", "disk_again"))
    assert [f["fold"] for f in disk["folds"]] == [0, 1, 2]
    for m, d, a in zip(memory["folds"], disk["folds"], again["folds"]):
        assert abs(m["auroc"] - d["auroc"]) < 0.05  # block shuffling orders the batches differently
        assert d == a  # and the same run gives the same numbers
    assert not list(Path(runs["disk"].run_dir).glob("**/rows"))  # the encoded rows are removed after each fit


def test_validation_scores_from_the_files_are_the_scores_of_the_raw_rows(runs):
    from netad.inference import NetadPredictor

    ckpt = _fold_checkpoint(runs["disk"], 1)
    predictor = NetadPredictor.from_checkpoint_dict(ckpt)
    val = ckpt[CHECKPOINT_KEY]["metadata"]["val_indices"].numpy()
    frame = runs["frame"]
    scores = predictor.score(frame.drop(columns=["label"]).iloc[val])
    saved = json.loads((Path(runs["disk"].run_dir) / "fold_1" / "result.json").read_text())
    assert compute_metrics(scores, frame["label"].to_numpy()[val].astype(int), saved["threshold"]) == \
        pytest.approx(saved["val_metrics"], abs=1e-12)


def test_an_interrupted_out_of_core_run_resumes_to_the_same_numbers(runs, tmp_path):
    cfg = fast_config(tmp_path, runs["source"], data__in_memory="false", training__num_epochs="4")
    with pytest.raises(Crash):
        run_cv(cfg, run_name="r", quiet=True, extra_callbacks=lambda name: [CrashAtEpoch(2)] if name == "fold_1" else [])
    run = Path(cfg.checkpoint.save_dir) / "r"
    assert not (run / "fold_1" / "rows").exists()  # no encoded rows left behind
    resumed = run_cv(None, resume=run, quiet=True)
    assert json.loads((Path(resumed.run_dir) / "cv_results.json").read_text())["folds"] == \
        json.loads((Path(runs["disk"].run_dir) / "cv_results.json").read_text())["folds"]


def test_large_runs_keep_their_splits_in_npz(runs, tmp_path, monkeypatch):
    monkeypatch.setattr("netad.training.runs.JSON_SPLIT_ROWS", 100)
    cfg = fast_config(tmp_path, runs["source"], data__in_memory="false", training__num_epochs="2",
                      cross_validation__train_final_model="false")
    with pytest.raises(Crash):
        run_cv(cfg, run_name="r", quiet=True, extra_callbacks=lambda name: [CrashAtEpoch(1)] if name == "fold_2" else [])
    run = Path(cfg.checkpoint.save_dir) / "r"
    saved = json.loads((run / "splits.json").read_text())
    assert saved["rows_file"] == "splits.npz" and saved["dev"] == [] and (run / "splits.npz").is_file()
    resumed = run_cv(None, resume=run, quiet=True)
    assert len(resumed.folds) == 3


def test_what_needs_the_rows_in_memory_is_one_line(runs, tmp_path):
    cfg = fast_config(tmp_path, runs["source"], data__in_memory="false", model__type="hybrid")
    with pytest.raises(UserError, match="out of core .* the classifier trains alone"):
        run_cv(cfg, run_name="h", quiet=True)


def test_the_leakage_check_finds_out_of_core_what_it_finds_in_memory(tmp_path):
    frame = make_frame(n=3000, seed=22)
    frame["leak"] = frame["label"] * 3.0 + np.random.default_rng(0).normal(0, 0.01, len(frame))
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame = frame.iloc[list(range(3000)) + list(range(100))].reset_index(drop=True)  # 100 duplicate rows
    cfg = load_config(None, [f"data.data_path={_parquet(frame, tmp_path / 'leaky.parquet')}"]).data
    whole, streamed = load_table(cfg), load_streamed(cfg)
    dev, test = np.arange(0, 2500), np.arange(2500, 3100)
    a = [f.to_json() for f in leakage_findings(whole.features, whole.labels, dev, test, 0)]
    b = [f.to_json() for f in streamed_leakage_findings(streamed, dev, test, 0)]
    assert a == b and {f["kind"] for f in a} >= {"separates", "duplicates_test"}
