"""``--engine ray`` on a local 2-CPU Ray cluster this module starts (and stops): scoring gives predict.py's
scores bit for bit, CV gives the local run's cv_results.json, and what cannot work is said in one line."""

from __future__ import annotations

import builtins
import json
import socket
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import ray
import yaml

from conftest import fast_config, make_frame, tiny_model
from netad.cli import predict_main, train_main


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("ray_model"), seed=21, run_name="ray")


def run(capsys, main, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _flows(folder, n=400, seed=22, gaps=(5, 310)):
    frame = make_frame(n=n, seed=seed)
    frame.insert(0, "row_id", np.arange(n))
    frame.loc[list(gaps), "packet_size"] = np.nan  # the model does not impute: these rows are rejected
    folder.mkdir()
    half = n // 2
    pq.write_table(pa.Table.from_pandas(frame.iloc[:half], preserve_index=False), folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[half:], preserve_index=False), folder / "b.parquet")
    return frame


def _close_scores(a: pa.Table, b: pa.Table, threshold: float) -> None:
    """Same rows, same input columns and types; scores within 1e-6 (a row's float32 score can differ in its last
    bit when its batch holds other rows: matrix kernels round by the batch's shape), flags alike away from the
    threshold."""
    assert a.drop_columns(["score", "is_anomaly"]).equals(b.drop_columns(["score", "is_anomaly"]))
    x, y = a.column("score").to_numpy(), b.column("score").to_numpy()
    assert np.allclose(x, y, rtol=0, atol=1e-6)
    clear = np.abs(x - threshold) > 1e-6
    assert np.array_equal(a.column("is_anomaly").to_numpy()[clear], b.column("is_anomaly").to_numpy()[clear])


def test_ray_scoring_gives_predict_pys_scores(cluster, trained, tmp_path, capsys):
    from netad.inference import load_predictor

    threshold = load_predictor(trained).threshold
    frame = _flows(tmp_path / "flows")
    for route in ("local", "ray"):
        for source in ("flows", "flows/a.parquet"):
            engine = ("--engine", "ray") if route == "ray" else ()
            target = tmp_path / route / ("one" if source.endswith(".parquet") else "all")
            if route == "local" and source.endswith(".parquet"):
                target = target / "a.parquet"
            code, printed, err = run(capsys, predict_main, "--model", trained, "--input", tmp_path / source,
                                     "--output", target, "--quiet", "--chunk-size", "64", *engine)
            assert code == 0, err
    assert "Scored 199 of 200 rows of 1 file on Ray" in printed and "1 rows could not be scored" in printed
    # one file: the same batches of 64 rows on both routes, so the same floats, bit for bit
    one = pads.dataset(str(tmp_path / "ray" / "one")).to_table().sort_by("row_id")
    local_one = pq.read_table(tmp_path / "local" / "one" / "a.parquet").sort_by("row_id")
    assert one.filter(pa.compute.is_null(one.column("reject_reason"))).drop_columns(["reject_reason"]).equals(local_one)
    assert one.schema.field("score").type == pa.float32()
    # two files: Ray Data may batch rows of both together
    on_ray = pads.dataset(str(tmp_path / "ray" / "all")).to_table().sort_by("row_id")
    local = pads.dataset([str(tmp_path / "local" / "all" / f) for f in ("a.parquet", "b.parquet")]).to_table() \
        .sort_by("row_id")
    assert local.num_rows == 398 and on_ray.num_rows == 400  # every input row is in Ray's shards
    _close_scores(on_ray.filter(pa.compute.is_null(on_ray.column("reject_reason"))).drop_columns(["reject_reason"]),
                  local, threshold)
    rejected = on_ray.filter(pa.compute.is_valid(on_ray.column("reject_reason"))).to_pandas()
    assert rejected["row_id"].tolist() == [5, 310]
    assert rejected["reject_reason"].tolist() == ["column 'packet_size': missing or infinite value"] * 2
    assert rejected["score"].isna().all() and rejected["is_anomaly"].isna().all()

    # CSV shards for CSV input: the predictor's own float32 scores of that one batch
    clean = frame.drop(index=[5, 310])
    (tmp_path / "csv").mkdir()
    clean.to_csv(tmp_path / "csv" / "a.csv", index=False)
    code, printed, err = run(capsys, predict_main, "--engine", "ray", "--model", trained, "--input",
                             tmp_path / "csv", "--output", tmp_path / "csv_out", "--quiet", "--chunk-size", "1000")
    assert code == 0, err
    shards = sorted((tmp_path / "csv_out").glob("*.csv"))
    out = pd.concat([pd.read_csv(p) for p in shards]).sort_values("row_id")
    expected = load_predictor(trained).score(clean.drop(columns=["row_id"]))
    assert np.array_equal(out["score"].to_numpy(np.float32), expected)
    assert out["is_tcp"].tolist() == clean["is_tcp"].tolist()  # the input text as it was


def _dies_first(original, marker):
    """A fold task whose first try kills its worker process (as a machine that goes away would)."""

    def task(cwd, run_path, fold):
        import os
        from pathlib import Path

        if not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)
        return original(cwd, run_path, fold)

    return task


def test_ray_cv_gives_the_local_runs_results_and_continues_a_run(cluster, tmp_path, capsys, monkeypatch):
    from ray import cloudpickle

    from netad.training import ray_engine
    from netad.training.cv import run_cv

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    marker = tmp_path / "died_once"
    monkeypatch.setattr(ray_engine, "fold_job", _dies_first(ray_engine.fold_job, str(marker)))

    make_frame(n=240, seed=23).to_csv(tmp_path / "t.csv", index=False)
    overrides = dict(training__num_epochs="1", cross_validation__n_splits="2",
                     cross_validation__permutation_baseline="true")
    cfg = fast_config(tmp_path, tmp_path / "t.csv", **overrides)
    local = json.loads((run_cv(cfg, run_name="local", quiet=True).run_dir / "cv_results.json").read_text())
    assert run_cv(cfg, run_name="on_ray", only_fold=0, quiet=True) is None  # fold 0 done here: Ray does the rest
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    code, printed, err = run(capsys, train_main, "--use-cv", "--engine", "ray", "--run-name", "on_ray",
                             "--config", tmp_path / "cfg.yaml")
    assert code == 0, err
    assert "1 fold as Ray tasks" in printed and "fold_1 done: ROC AUC" in printed
    assert marker.is_file()  # its first try died, and Ray ran it again
    on_ray = json.loads((tmp_path / "checkpoints" / "on_ray" / "cv_results.json").read_text())
    for key in ("folds", "summary", "baselines", "verdict", "n_rows", "n_test_rows"):
        assert on_ray[key] == local[key], key
    assert len(on_ray["baselines"]["permutation"]["folds"]) == 2  # each fold's permutation baseline ran too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cluster_that_does_not_answer_is_one_line(trained, tmp_path, capsys, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process: this one may hold a cluster
    _flows(tmp_path / "flows", n=40, gaps=())
    code, _, err = run(capsys, predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "flows",
                       "--output", tmp_path / "out", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:{port}" in err and "ray start --head" in err


def test_ray_not_installed_says_how_to_install_it(trained, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    _flows(tmp_path / "flows", n=40, gaps=())
    code, _, err = run(capsys, predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "flows",
                       "--output", tmp_path / "out", "--quiet")
    assert code == 2 and err.strip() == "error: --engine ray needs Ray, which is not installed: pip install -e .[ray]"


@pytest.mark.parametrize("case, message", [
    ("no_cv", "--engine ray runs the folds of a cross-validation: add --use-cv"),
    ("fold", "--engine ray trains every fold itself: --select, --fold and --gather do not apply"),
    ("rejects", "--engine ray keeps every row in the output shards"),
    ("not_empty", "--output {tmp}/full already holds files: name a new or empty folder"),
    ("mixed", "--engine ray reads one kind of file per run: {tmp}/mixed/a.parquet is Parquet, {tmp}/mixed/c.csv CSV"),
])
def test_what_the_ray_engine_cannot_do_is_one_line(trained, tmp_path, capsys, case, message):
    frame = _flows(tmp_path / "mixed", n=40, gaps=())
    frame.to_csv(tmp_path / "mixed" / "c.csv", index=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"x")
    args = {
        "no_cv": (train_main, "--engine", "ray", "--set", f"data.data_path={tmp_path / 'mixed' / 'c.csv'}"),
        "fold": (train_main, "--engine", "ray", "--use-cv", "--fold", "0"),
        "rejects": (predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "mixed", "--output",
                    tmp_path / "o", "--rejects", tmp_path / "r.csv"),
        "not_empty": (predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "mixed" / "a.parquet",
                      "--output", tmp_path / "full"),
        "mixed": (predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "mixed", "--output",
                  tmp_path / "o"),
    }[case]
    code, _, err = run(capsys, *args)
    assert code == 2 and message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err


def test_a_fold_task_that_cannot_see_the_run_says_so(tmp_path, monkeypatch):
    from netad.training.ray_engine import fold_job

    monkeypatch.chdir(tmp_path)  # the task moves into the folder it is given: this test's goes back after it
    said = fold_job(str(tmp_path / "not_here"), "checkpoints/run", 0)
    assert f"the working folder {tmp_path / 'not_here'} does not exist" in said and "shared file system" in said
    said = fold_job(str(tmp_path), "checkpoints/run", 0)
    assert f"the run folder {tmp_path / 'checkpoints/run'} is not visible" in said and "shared file system" in said


def test_a_failed_task_is_said_by_its_own_error(cluster):
    from netad.errors import UserError
    from netad.ray_cluster import task_error_line

    @ray.remote(max_retries=0)
    def fails(kind):
        if kind == "user":
            raise UserError("fold 3 is being trained by another process")
        try:
            int("x")
        except ValueError as exc:
            raise RuntimeError("could not read the block\nmore lines") from exc

    with pytest.raises(ray.exceptions.RayTaskError) as caught:
        ray.get(fails.remote("user"))
    assert task_error_line(caught.value) == "fold 3 is being trained by another process"
    with pytest.raises(ray.exceptions.RayTaskError) as caught:
        ray.get(fails.remote("other"))
    assert task_error_line(caught.value).startswith("RuntimeError: could not read the block")


def test_input_without_rows_is_one_line(cluster, trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.csv").write_text(",".join(make_frame(n=4).columns) + "\n")
    code, _, err = run(capsys, predict_main, "--engine", "ray", "--model", trained, "--input", tmp_path / "empty",
                       "--output", tmp_path / "out", "--quiet")
    assert code == 2 and f"no shards in {tmp_path / 'out'}: the input held no rows" in err, err


def test_a_fold_task_asks_for_what_a_node_has(tmp_path):
    from netad.errors import UserError
    from netad.training.ray_engine import check_engine_config, task_options

    cfg = fast_config(tmp_path, tmp_path / "t.csv", trainer__accelerator="auto", trainer__num_threads="2")
    assert task_options(cfg, {"CPU": 8, "GPU": 0})["num_gpus"] == 0
    assert task_options(cfg, {"CPU": 8, "GPU": 4})["num_gpus"] == 1  # auto on a cluster with GPUs: one each
    assert task_options(cfg, {"CPU": 8, "GPU": 0})["num_cpus"] == 2
    with pytest.raises(UserError, match="no node of the Ray cluster has 2 CPUs"):
        task_options(cfg, {"CPU": 1, "GPU": 0})  # Ray would wait for such a node forever
    with pytest.raises(UserError, match="the Ray cluster has no GPU"):
        task_options(fast_config(tmp_path, tmp_path / "t.csv", trainer__accelerator="gpu"), {"CPU": 8, "GPU": 0})
    with pytest.raises(UserError, match="gives each fold task one device"):
        check_engine_config(fast_config(tmp_path, tmp_path / "t.csv", trainer__devices="2"))
    with pytest.raises(UserError, match="trainer.strategy ddp"):
        check_engine_config(fast_config(tmp_path, tmp_path / "t.csv", trainer__strategy="ddp"))


def test_connecting_keeps_the_sigterm_handler(monkeypatch):
    import signal

    from netad import ray_cluster

    def handler(signum, frame):
        pass

    def init(**kwargs):  # as ray.init does: a SIGTERM handler of its own
        signal.signal(signal.SIGTERM, lambda *a: None)

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    before = signal.signal(signal.SIGTERM, handler)
    try:
        ray_cluster.connect()
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_csv_files_without_a_header_are_read_with_the_models_column_names(cluster, tmp_path, capsys):
    from netad.training.cv import run_single

    frame = make_frame(n=200, seed=24)
    frame.to_csv(tmp_path / "t.csv", index=False, header=False)
    cfg = fast_config(tmp_path, tmp_path / "t.csv", data__column_names=json.dumps(list(frame.columns)))
    model = run_single(cfg, run_name="headerless", quiet=True).checkpoint
    (tmp_path / "in").mkdir()
    frame.to_csv(tmp_path / "in" / "a.csv", index=False, header=False)
    code, printed, err = run(capsys, predict_main, "--engine", "ray", "--model", model, "--input", tmp_path / "in",
                             "--output", tmp_path / "out", "--quiet", "--chunk-size", "1000")
    assert code == 0, err
    out = pd.concat([pd.read_csv(p) for p in sorted((tmp_path / "out").glob("*.csv"))])
    assert list(out.columns[:len(frame.columns)]) == list(frame.columns) and len(out) == 200
    from netad.inference import load_predictor

    expected = load_predictor(model).score(frame.drop(columns=["label"]))
    order, got = np.argsort(frame["packet_size"].to_numpy()), out.sort_values("packet_size")
    assert np.allclose(got["score"].to_numpy(np.float32), expected[order], rtol=0, atol=1e-6)  # Ray may split blocks
