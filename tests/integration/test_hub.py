"""Export, the predictor and upload_to_hub.py against a local Hub-compatible server (tests/hub_server.py).

The real huggingface_hub client talks to it through HF_ENDPOINT (set in conftest before import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, fast_config, make_frame
from netad.cli import upload_main
from netad.training.cv import run_cv, run_single


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny trained single-split model and the frame it was trained on."""
    root = tmp_path_factory.mktemp("hubmodel")
    frame = make_frame(n=300, seed=2)
    csv_path = root / "traffic.csv"
    frame.to_csv(csv_path, index=False)
    cfg = fast_config(root, csv_path, training__num_epochs="5")
    run_single(cfg, run_name="tiny", quiet=True)
    return {"root": root, "csv": csv_path, "frame": frame, "ckpt": root / "checkpoints" / "best_model.ckpt"}


def checkpoint_scores(ckpt: Path, frame: pd.DataFrame) -> np.ndarray:
    """The checkpoint's scores recomputed by hand, not through the predictor: the whole one-hot feature matrix
    through the plain MLP, and for a hybrid the novelty rule on top."""
    from netad.data.preprocessing import TabularPreprocessor
    from netad.models.mlp import MLP
    from netad.models.novelty import combine, scorer_from_state

    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp, ours = saved["hyper_parameters"], saved["netad"]
    net = MLP(hp["input_dim"], hp["hidden_dims"], hp["dropout"], hp["activation"]).eval()
    net.load_state_dict({k[len("model."):]: v for k, v in saved["state_dict"].items() if k.startswith("model.")})
    x = torch.from_numpy(TabularPreprocessor.from_state(ours["preprocessor"]).transform(frame.drop(columns=["label"])))
    with torch.no_grad():
        logit = net(x)
        p = torch.sigmoid(logit)
        if ours.get("novelty"):
            novelty = scorer_from_state(ours["novelty"])
            fusion = ours["novelty"].get("fusion")
            if fusion:  # stacking: a logistic model of the logit and asinh of the novelty score
                w = fusion["weights"]
                z = novelty(x).numpy()
                return 1 / (1 + np.exp(-(w["logit"] * logit.double().numpy() + w["novelty"] * np.arcsinh(z)
                                         + w["bias"])))
            p = combine(p, novelty(x), ours["threshold"], novelty.threshold)
    return p.numpy()


def run_upload(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = upload_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_round_trip_through_the_hub_is_bit_identical(model, hub, capsys, tmp_path):
    from netad.inference import NetadPredictor

    export = tmp_path / "export"
    code, out, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/tiny-netad",
                                "--token", hub.token, "--output", str(export), "--commit-message", "first")
    assert code == 0, err
    assert f"Uploaded to {hub.url}/alice/tiny-netad" in out
    assert sorted(hub.repos["alice/tiny-netad"]["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert {("POST", "/api/repos/create"), ("POST", "/api/models/alice/tiny-netad/preupload/main"),
            ("POST", "/api/models/alice/tiny-netad/commit/main")} <= set(hub.requests)
    assert hub.repos["alice/tiny-netad"]["files"]["model.safetensors"] == (export / "model.safetensors").read_bytes()

    from_hub = NetadPredictor.from_pretrained("alice/tiny-netad")
    from_folder = NetadPredictor.from_pretrained(export)
    rows = model["frame"].drop(columns=["label"])
    expected = checkpoint_scores(model["ckpt"], model["frame"])
    # the Hub copy scores bit-identically to the local export; both match the checkpoint's training-time
    # scoring up to float rounding (the predictor looks up one-hot blocks instead of multiplying them)
    np.testing.assert_array_equal(from_hub.score(rows), from_folder.score(rows))
    np.testing.assert_allclose(from_folder.score(rows), expected, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(from_hub.predict(rows), from_folder.predict(rows))
    assert hub.unrouted == []  # the client asked for nothing the server does not implement
    assert from_hub.predict(rows)["is_anomaly"].tolist() == (expected >= from_hub.threshold).astype(int).tolist()

    # a second upload to the same repo is fine (create_repo with exist_ok)
    code, out, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/tiny-netad",
                                "--token", hub.token, "--output", str(tmp_path / "export2"))
    assert code == 0, err

    # the token is in no file written (export, Hub cache) and in no output
    written = files_under(export, tmp_path / "export2", Path(os.environ["HF_HOME"]), model["root"])
    assert written
    for path in written:
        assert hub.token.encode() not in path.read_bytes(), path
    assert hub.token not in out + err


def test_the_predictor_takes_frames_dicts_and_csv_files(model, tmp_path):
    from netad.inference import NetadPredictor
    from netad.export.artifact import export_checkpoint

    folder = export_checkpoint(model["ckpt"], tmp_path / "m")
    pred = NetadPredictor.from_pretrained(folder)
    frame = model["frame"].head(20)
    features = frame.drop(columns=["label"])
    by_frame = pred.score(features)
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)  # with the label column: extra columns are ignored
    np.testing.assert_array_equal(pred.score(path), by_frame)
    records = json.loads(features.to_json(orient="records"))
    np.testing.assert_allclose(pred.score(records), by_frame, rtol=1e-6)
    np.testing.assert_allclose(pred.score(records[0]), by_frame[:1], rtol=1e-6)
    with pytest.raises(ValueError, match="missing columns the model reads: bytes"):
        pred.score(features.drop(columns=["bytes"]))


def test_exported_folder_is_json_and_safetensors_and_loads_without_lightning_or_pickle(model, tmp_path):
    from netad.export.artifact import export_checkpoint

    folder = export_checkpoint(model["ckpt"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "netad-model" and config["threshold"] > 0
    assert config["preprocessing"]["input_columns"] == [c for c in model["frame"].columns if c != "label"]
    assert config["preprocessing"]["categorical"]["columns"] == ["protocol"]
    assert "test_indices" not in json.dumps(config)
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", framework="pt") as fh:
        assert all(k.startswith("mlp.") for k in fh.keys())
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: netad\n") and "## Use it" in card and "## Limitations" in card
    assert "Not cross-validated" in card and f"{config['threshold']:.4f}" in card

    script = (
        "import sys, pickle, torch\n"
        "def refuse(*a, **k): raise AssertionError('unpickling during load')\n"
        "pickle.loads = pickle.load = torch.load = refuse\n"
        "from netad.inference import NetadPredictor\n"
        f"m = NetadPredictor.from_pretrained({str(folder)!r})\n"
        f"s = m.score({str(model['csv'])!r})\n"
        "print(len(s), 'lightning' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["300", "False"]


def test_model_card_of_a_cv_model_on_data_without_signal_says_so(tmp_path):
    from netad.export.artifact import export_checkpoint

    csv_path = tmp_path / "noise.csv"
    make_frame(n=300, signal=0.0, seed=4).to_csv(csv_path, index=False)
    cfg = fast_config(tmp_path, csv_path)
    result = run_cv(cfg, run_name="noise", quiet=True)
    assert "NOT beat chance" in result.verdict["message"]
    folder = export_checkpoint(tmp_path / "checkpoints" / "best_model.ckpt", tmp_path / "m")
    card = (folder / "README.md").read_text()
    assert "does not beat chance" in card and "| auroc |" in card
    auroc = result.summary["auroc"]
    assert f"{auroc['mean']:.3f} ± {auroc['std']:.3f}" in card


def test_hybrid_exports_with_its_novelty_detector(tmp_path, csv_path):
    from netad.inference import NetadPredictor
    from netad.export.artifact import export_checkpoint

    cfg = fast_config(tmp_path, csv_path, model__type="hybrid", hybrid__detector="ae", hybrid__params="{epochs: 3}")
    run_single(cfg, run_name="hy", quiet=True)
    ckpt = tmp_path / "checkpoints" / "best_model.ckpt"
    pred = NetadPredictor.from_pretrained(export_checkpoint(ckpt, tmp_path / "m"))
    assert pred.novelty is not None and pred.config["model_type"] == "hybrid"
    frame = pd.read_csv(csv_path)
    np.testing.assert_allclose(pred.score(frame.drop(columns=["label"])), checkpoint_scores(ckpt, frame),
                               rtol=0, atol=1e-6)


def test_stacked_hybrid_survives_export_and_the_hub_bit_for_bit(tmp_path, csv_path, hub, capsys):
    """hybrid.combine stack: the fused score of the checkpoint, the exported folder and the Hub copy agree bit for
    bit, match the stacking formula by hand, and are flagged at a threshold chosen on the validation rows' fused
    scores."""
    from netad.evaluation.evaluate import open_model, training_rows
    from netad.inference import NetadPredictor
    from netad.metrics import choose_threshold

    cfg = fast_config(tmp_path, csv_path, model__type="hybrid", hybrid__detector="kmeans", **STACK)
    run_single(cfg, run_name="stack", quiet=True)
    ckpt = tmp_path / "checkpoints" / "best_model.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["netad"]["novelty"]["fusion"] == {"rule": "stack",
                                                   "weights": {"logit": 0.8, "novelty": 1.5, "bias": -0.5}}
    assert float(saved["state_dict"]["threshold"]) == pytest.approx(saved["netad"]["threshold"])
    export = tmp_path / "export"
    code, out, err = run_upload(capsys, "--checkpoint", str(ckpt), "--repo-id", "alice/stacked", "--token",
                                hub.token, "--output", str(export))
    assert code == 0, err
    frame = pd.read_csv(csv_path)
    rows = frame.drop(columns=["label"])
    from_ckpt = NetadPredictor.from_checkpoint(ckpt)
    from_hub = NetadPredictor.from_pretrained("alice/stacked")
    assert from_hub.config["novelty"]["fusion"]["rule"] == "stack"
    scores = from_ckpt.score(rows)
    np.testing.assert_array_equal(NetadPredictor.from_pretrained(export).score(rows), scores)
    np.testing.assert_array_equal(from_hub.score(rows), scores)
    np.testing.assert_allclose(scores, checkpoint_scores(ckpt, frame), rtol=0, atol=1e-6)
    # the threshold: the configured method on the validation rows' fused scores, not the classifier's threshold
    val_features, val_labels = training_rows(open_model(ckpt))["validation"]
    assert from_hub.threshold == pytest.approx(choose_threshold(from_ckpt.score(val_features), val_labels))
    assert from_hub.predict(rows)["is_anomaly"].tolist() == (scores >= from_hub.threshold).astype(int).tolist()


# ------------------------------------------------------------------ bad input


def assert_one_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_refused_token_is_a_clear_error_without_the_token(model, hub, capsys, tmp_path):
    code, out, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/other",
                                "--token", "hf_wrong_secret_value", "--output", str(tmp_path / "e"))
    assert_one_line(code, err, "refused the token (HTTP 401)")
    assert "hf_wrong_secret_value" not in out + err
    assert "alice/other" not in hub.repos


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "bad name/x", "user/-x", "user/x..y"])
def test_malformed_repo_id(model, capsys, repo_id):
    code, _, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", repo_id, "--dry-run")
    assert_one_line(code, err, "is not of the form user/name")


def test_no_repo_id_no_token_missing_checkpoint(model, capsys, tmp_path):
    code, _, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]))  # the config has no huggingface.repo_id
    assert_one_line(code, err, "no repo id")
    code, _, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/x")
    assert_one_line(code, err, "no Hugging Face token")
    code, _, err = run_upload(capsys, "--checkpoint", str(tmp_path / "nope.ckpt"), "--repo-id", "alice/x")
    assert_one_line(code, err, "checkpoint not found")


def test_dry_run_uploads_nothing(model, hub, capsys, tmp_path):
    code, out, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/dry", "--dry-run",
                                "--onnx", "--output", str(tmp_path / "d"))
    assert code == 0, err
    assert "Dry run: would upload these 4 files to alice/dry" in out and "model.safetensors" in out
    assert "model.onnx" in out and (tmp_path / "d" / "model.onnx").is_file()
    assert "alice/dry" not in hub.repos


def test_upload_takes_set_and_quiet_like_every_script(model, hub, capsys, tmp_path):
    code, out, err = run_upload(capsys, "--model", str(model["ckpt"]), "--dry-run", "--quiet", "--output",
                                str(tmp_path / "q"), "--set", "huggingface.repo_id=alice/from-set",
                                "--set", "huggingface.private=true")
    assert code == 0, err
    assert "would upload these 3 files to alice/from-set (private)" in out
    assert out.splitlines()[0].startswith("Exported ")  # --quiet: no progress lines before the summary
    code, _, err = run_upload(capsys, "--model", str(model["ckpt"]), "--dry-run", "--set", "huggingface.repo=x")
    assert code == 2 and "huggingface.repo_id" in err  # the nearest valid key


def closed_port() -> int:
    with __import__("socket").socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_through_the_script(model, tmp_path):
    port = closed_port()
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN="hf_env_secret_value")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "upload_to_hub.py"), "--model", str(model["ckpt"]),
                           "--repo-id", "alice/x", "--output", str(tmp_path / "u")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    seconds = time.monotonic() - start
    assert_one_line(proc.returncode, proc.stderr, f"cannot reach the Hub at http://127.0.0.1:{port}")
    assert "hf_env_secret_value" not in proc.stdout + proc.stderr
    # checked before the checkpoint is loaded (no Lightning import) or exported
    assert proc.stdout == "" and not (tmp_path / "u").exists() and seconds < 10, (seconds, proc.stdout)


STACK = {"hybrid__combine": "stack", "hybrid__stack_weights": "{logit: 0.8, novelty: 1.5, bias: -0.5}"}


@pytest.mark.parametrize("kind", ["classifier", "pca", "kmeans", "ae", "stack", "temperature"])
def test_onnx_export_matches_pytorch(tmp_path, csv_path, kind):
    import onnxruntime

    from netad.inference import NetadPredictor
    from netad.export.artifact import export_checkpoint

    extra = {} if kind == "classifier" else {"model__type": "hybrid", "hybrid__detector": kind}
    if kind == "ae":
        extra["hybrid__params"] = "{epochs: 3}"
    if kind == "stack":
        extra.update(STACK, hybrid__detector="kmeans")
    if kind == "temperature":  # a calibrated classifier
        extra = {"calibration": "temperature"}
    cfg = fast_config(tmp_path, csv_path, **extra)
    run_single(cfg, run_name="ox", quiet=True)
    folder = export_checkpoint(tmp_path / "checkpoints" / "best_model.ckpt", tmp_path / "m", onnx=True)
    pred = NetadPredictor.from_pretrained(folder)
    assert pred.config["onnx"]["file"] == "model.onnx" and pred.config["onnx"]["max_abs_diff_vs_pytorch"] <= 1e-5
    frame = pd.read_csv(csv_path).drop(columns=["label"])
    frame.loc[::7, "protocol"] = "never seen"  # the unknown bucket too
    x = pred.preprocessor.transform(frame)  # the preprocessing config.json describes
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": x})[0]
    # ONNX on preprocessed rows = the predictor on the raw rows (its serving path), to 1e-5
    np.testing.assert_allclose(got, pred.score(frame), atol=1e-5, rtol=0)
    assert got.std() > 0  # scores that tell rows apart, not a constant both sides agree on


def test_onnx_export_is_checked_against_the_predictor(model, tmp_path, monkeypatch):
    """The check compares with the predictor's own scoring: an ONNX file that disagrees with it is not kept."""
    from netad.errors import UserError
    from netad.export.onnx import export_onnx
    from netad.inference import NetadPredictor

    pred = NetadPredictor.from_checkpoint(model["ckpt"])
    assert export_onnx(pred, tmp_path / "model.onnx")["max_abs_diff_vs_pytorch"] <= 1e-5
    served = pred.score_encoded
    monkeypatch.setattr(pred, "score_encoded", lambda enc: (served(enc)[0] + np.float32(1e-3), None))
    with pytest.raises(UserError, match=r"ONNX export differs from PyTorch by 1\.0\de-03 \(> 1e-05\); not written"):
        export_onnx(pred, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_repo_id_and_private_default_to_the_config(model, capsys, tmp_path):
    import yaml

    from netad.config import load_config

    cfg = load_config(None, ["huggingface.repo_id=team/from-config", "huggingface.private=true"])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    code, out, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--config", str(config), "--dry-run",
                                "--output", str(tmp_path / "d"))
    assert code == 0, err
    assert "to team/from-config (private)" in out


def test_upload_sends_only_the_model_files(model, hub, capsys, tmp_path):
    export = tmp_path / "shared_folder"
    export.mkdir()
    (export / ".env").write_text("SECRET=1\n")
    (export / "model.onnx").write_bytes(b"stale")  # from an earlier export of something else
    code, _, err = run_upload(capsys, "--checkpoint", str(model["ckpt"]), "--repo-id", "alice/clean",
                              "--token", hub.token, "--output", str(export))
    assert code == 0, err
    assert sorted(hub.repos["alice/clean"]["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert not (export / "model.onnx").exists()
    config_text, card = (export / "config.json").read_text(), (export / "README.md").read_text()
    assert "source" not in json.loads(config_text)["data"]  # neither the local path nor the file name
    for text in (config_text, card):
        assert str(model["root"]) not in text and "traffic.csv" not in text


# ------------------------------------------------------------------ Hub ids without a Hub


def assert_no_line_twice(text: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), text


def test_offline_hub_id_fails_fast_with_one_line(model, tmp_path):
    port = closed_port()
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", "alice/nowhere", "--input",
                           str(model["csv"]), "--output", str(tmp_path / "out.csv")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    seconds = time.monotonic() - start
    # the Hub client alone sleeps 23 s between its five retries before it gives up on an uncached file; the
    # bound leaves room for the imports on a busy machine (the API test below times the load itself)
    assert seconds < 20, seconds
    assert_one_line(proc.returncode, proc.stderr, "alice/nowhere: cannot reach the Hub at "
                    f"http://127.0.0.1:{port}", "no network", "not in the local cache")
    assert_no_line_twice(proc.stdout + proc.stderr)
    assert not (tmp_path / "out.csv").exists()


def test_from_pretrained_without_the_hub_uses_the_cache_or_raises_one_line(model, hub, tmp_path):
    from huggingface_hub import HfApi

    from netad.inference import NetadPredictor
    from netad.export.artifact import export_checkpoint

    api = HfApi(token=hub.token)
    api.create_repo("alice/cached", exist_ok=True)
    api.upload_folder(folder_path=str(export_checkpoint(model["ckpt"], tmp_path / "m")), repo_id="alice/cached")
    expected = NetadPredictor.from_pretrained("alice/cached").score(model["csv"])  # now in the local cache
    script = (
        "import sys, time\n"
        "from netad.inference import ModelLoadError, NetadPredictor\n"
        "start = time.monotonic()\n"
        f"print(*NetadPredictor.from_pretrained('alice/cached').score({str(model['csv'])!r})[:3])\n"
        "try:\n"
        "    NetadPredictor.from_pretrained('alice/uncached')\n"
        "except ModelLoadError as exc:\n"
        "    print(isinstance(exc, OSError), exc)\n"
        "print(round(time.monotonic() - start, 1))\n"
    )
    port = closed_port()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}"))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no traceback, no retry lines
    scores, error, seconds = proc.stdout.splitlines()
    np.testing.assert_allclose([float(v) for v in scores.split()], expected[:3], rtol=1e-6)
    assert error == (f"True alice/uncached: cannot reach the Hub at http://127.0.0.1:{port} (ConnectError: no "
                     "network?), and the model is not in the local cache")
    assert float(seconds) < 5


def test_hub_answers_are_one_line_reasons(model, hub, tmp_path):
    from huggingface_hub import HfApi

    from netad.inference import ModelLoadError, NetadPredictor
    from netad.export.artifact import export_checkpoint

    api = HfApi(token=hub.token)
    api.create_repo("alice/private-netad", private=True, exist_ok=True)
    api.upload_folder(folder_path=str(export_checkpoint(model["ckpt"], tmp_path / "m")), repo_id="alice/private-netad")
    api.create_repo("alice/not-netad", exist_ok=True)
    api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="notes.txt", repo_id="alice/not-netad")
    cases = {"alice/absent": "no such model repo on the Hub",
             "alice/private-netad": "the Hub refused access (HTTP 401, unauthorised)",
             "alice/not-netad": "the repo has no config.json: not an exported netad model"}
    for repo_id, needle in cases.items():
        with pytest.raises(ModelLoadError) as info:
            NetadPredictor.from_pretrained(repo_id)
        assert str(info.value).startswith(f"{repo_id}: ") and needle in str(info.value), str(info.value)
        assert "\n" not in str(info.value) and hub.token not in str(info.value)
    assert NetadPredictor.from_pretrained("alice/private-netad", token=hub.token).threshold > 0
    with pytest.raises(ModelLoadError, match="not in the local cache, and downloads are off .local_files_only"):
        NetadPredictor.from_pretrained("alice/not-netad", local_files_only=True)


def test_upload_model_flag_with_checkpoint_as_its_alias():
    from netad.cli import upload_parser

    assert upload_parser().parse_args(["--model", "a.ckpt"]).checkpoint == "a.ckpt"
    assert upload_parser().parse_args(["--checkpoint", "b.ckpt"]).checkpoint == "b.ckpt"
    assert "--model PATH" in upload_parser().format_usage()


# ------------------------------------------------------------------ what an export publishes


def test_export_holds_no_file_name_or_time_and_the_card_lists_the_training_values(model, tmp_path):
    from netad.export.artifact import export_checkpoint

    ckpt = torch.load(model["ckpt"], map_location="cpu", weights_only=True)
    meta = ckpt["netad"]["metadata"]
    meta.update(run_name="cv-20261201-221500", split="final", data_path="/data/secret-flows-2026.csv")
    meta["config"]["data"]["data_path"] = "/data/secret-flows-2026.csv"
    path = tmp_path / "dated.ckpt"
    torch.save(ckpt, path)
    folder = export_checkpoint(path, tmp_path / "m")
    config_text, card = (folder / "config.json").read_text(), (folder / "README.md").read_text()
    for text in (config_text, card):
        assert "secret-flows" not in text and "20261201" not in text and "221500" not in text
    config = json.loads(config_text)
    assert set(config["training"]) == {"cv_summary", "cv_verdict", "epoch"} and "source" not in config["data"]
    assert "datasets:" not in card.split("---")[1]
    section = card.split("## What this file publishes")[1]
    assert "`protocol` (3 values)" in section
    assert "scaler statistics (mean and standard deviation" in section
    assert "`packet_size`, `inter_arrival_time`, `bytes`" in section
    assert "no imputation values from the data (nan_policy `error`)" in section
    assert "input columns and of the label column (`label`)" in section and "looks like an identifier" not in card

    ckpt["netad"]["preprocessor"]["scaler"] = "minmax"
    ckpt["netad"]["preprocessor"]["nan_policy"] = "median"
    torch.save(ckpt, path)
    section = (export_checkpoint(path, tmp_path / "m2") / "README.md").read_text()
    assert "scaler statistics (minimum and range" in section and "imputation values (training medians)" in section


@pytest.fixture(scope="module")
def ip_model(tmp_path_factory):
    """A model trained on rows with a source-IP column (200 addresses)."""
    root = tmp_path_factory.mktemp("ipmodel")
    frame = make_frame(n=300, seed=3)
    rng = np.random.default_rng(3)
    frame.insert(0, "src_ip", [f"10.0.{i // 250}.{i % 250}" for i in rng.integers(0, 200, len(frame))])
    frame.to_csv(root / "flows.csv", index=False)
    run_single(fast_config(root, root / "flows.csv"), run_name="ip", quiet=True)
    return root / "checkpoints" / "best_model.ckpt"


def test_identifier_like_columns_warn_and_the_card_says_so(ip_model, capsys, tmp_path):
    import warnings

    from netad.export.artifact import PublishedDataWarning, export_checkpoint

    ckpt = torch.load(ip_model, map_location="cpu", weights_only=True)
    assert ckpt["netad"]["preprocessor"]["categorical"]["identifier_like"] == {"src_ip": "IP addresses"}
    older = tmp_path / "older.ckpt"  # from before training recorded identifier_like: the categories tell
    del ckpt["netad"]["preprocessor"]["categorical"]["identifier_like"]
    torch.save(ckpt, older)
    for path in (ip_model, older):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folder = export_checkpoint(path, tmp_path / path.stem)
        published = [str(w.message) for w in caught if issubclass(w.category, PublishedDataWarning)]
        assert published == ["column 'src_ip' looks like an identifier (IP addresses): the export publishes 50 of "
                             "its training values (config.json), and such a column rarely generalises; consider "
                             "data.drop_columns"]
        card = (folder / "README.md").read_text()
        assert "`src_ip` (50 values)" in card and "`protocol` (3 values)" in card
        assert ("**Warning:** text column `src_ip` looks like an identifier (IP addresses): publishing this model "
                "publishes 50 of its training values") in card and "`data.drop_columns`" in card
        assert "`protocol` looks like" not in card

    with pytest.warns(PublishedDataWarning) as said:  # upload_to_hub.py prints it (a NetadWarning: even quiet)
        code, out, err = run_upload(capsys, "--model", str(older), "--repo-id", "alice/ip", "--dry-run",
                                    "--output", str(tmp_path / "d"))
    assert code == 0, err
    assert [str(w.message) for w in said if w.category is PublishedDataWarning] == published
