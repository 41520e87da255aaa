"""Command-line entry points. Bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from netad.errors import NetadWarning, UserError, os_error_line


class _Terminated:
    """SIGTERM (a scheduler, ``kill``, a closing terminal) takes Ctrl-C's way out: atomic files, a resumable
    run, one line; only the exit code (143) says which signal it was."""

    received = False

    @classmethod
    def handler(cls, signum: int, frame: Any) -> None:
        cls.received = True
        raise KeyboardInterrupt


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Terminated.received = False
    before = signal.signal(signal.SIGTERM, _Terminated.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def user_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Turn UserError (and Ctrl-C, SIGTERM, environment errors) into one line and an exit code instead of
    a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            with _sigterm_as_interrupt():
                return func(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            what, code = ("terminated (SIGTERM)", 143) if _Terminated.received else ("interrupted", 130)
            run_dir = getattr(exc, "run_dir", None)
            print(f"{what}: resume with --resume {run_dir}" if run_dir else what, file=sys.stderr)
            return code
        except BrokenPipeError:  # output piped into head & co.: stop quietly, like other command-line tools
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except OSError as exc:  # a full disk, a read-only or forbidden folder: the environment, said in a line
            line = os_error_line(exc)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return UserError.exit_code

    return wrapper


class _LineFormatter(logging.Formatter):
    """Progress as it is; warnings and errors as ``warning: ...`` / ``error: ...``, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


class _ProgressLines(logging.Handler):
    """The project's progress lines (``netad`` loggers below WARNING) on stdout, where the results they lead to
    are printed; written to ``sys.stdout`` as it is when they are said (pytest and Jupyter replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(_is_progress)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stdout, flush=True)
        except Exception:  # as logging.StreamHandler does: report it on stderr, never raise
            self.handleError(record)


def _is_progress(record: logging.LogRecord) -> bool:
    """A progress line of the project's own: a ``netad`` logger's record below WARNING."""
    return record.levelno < logging.WARNING and (record.name == "netad" or record.name.startswith("netad."))


def _setup_logging(quiet: bool, progress: Optional[bool] = None) -> None:
    """Progress at INFO (WARNING without ``progress``, which defaults to ``not quiet``): the project's own lines
    on stdout; without progress only ``netad.run`` speaks (where a run lives). Warnings print on stderr as one
    line ``warning: ...``; with ``quiet`` only the project's own (:class:`NetadWarning`): other libraries'
    advice is noise to a user."""
    progress = not quiet if progress is None else progress
    import warnings

    handler = logging.StreamHandler()
    handler.setFormatter(_LineFormatter())
    handler.addFilter(lambda record: not _is_progress(record))  # those go to stdout
    logging.basicConfig(level=logging.INFO if progress else logging.WARNING, handlers=[handler])
    netad = logging.getLogger("netad")
    if not any(isinstance(h, _ProgressLines) for h in netad.handlers):  # once per process, however many commands
        netad.addHandler(_ProgressLines())
    netad.setLevel(logging.INFO if progress else logging.WARNING)
    logging.getLogger("netad.run").setLevel(logging.INFO)
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    if quiet:
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", category=NetadWarning)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train the anomaly classifier: one train/validation split, or stratified k-fold CV.",
    )
    p.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    p.add_argument("--use-cv", action="store_true", help="stratified k-fold cross-validation, then a final model")
    p.add_argument("--resume", metavar="PATH", help="run folder (or a checkpoint in it) of an interrupted run")
    p.add_argument("--fold", type=int, metavar="K",
                   help="run fold K only (0-based) and its permutation baseline, e.g. one job of a job array")
    p.add_argument("--gather", action="store_true",
                   help="summarise a run whose folds --fold jobs trained: trains no fold, only the final model, "
                        "and writes cv_results.json (needs --run-name or --resume)")
    p.add_argument("--select", action="store_true",
                   help="choose the hybrid's detector, budget and combination rule by by_type CV on the training "
                        "file (settings: selection.*), then train the final model with them")
    p.add_argument("--write-config", metavar="PATH", help="with --select: also write the chosen config to PATH")
    p.add_argument("--run-name", metavar="NAME", help="run folder name under checkpoint.save_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value parsed as YAML (repeatable)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="with --use-cv: local (default) trains the folds here; ray trains each fold as a task on "
                        "the Ray cluster (RAY_ADDRESS, else a local one; a shared file system), then the final "
                        "model here; needs pip install -e .[ray]")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    return p


@user_errors
def train_main(argv: Optional[Sequence[str]] = None) -> int:
    args = train_parser().parse_args(argv)
    _setup_logging(args.quiet)
    from netad.config import load_config

    if args.resume and (args.overrides or args.run_name):
        raise UserError("--resume continues a run with its saved config and name; --set and --run-name cannot change them")
    # a resume uses the run's saved config; a new run's config errors answer at once, before torch is imported
    cfg = None if args.resume else load_config(args.config, args.overrides)
    if args.write_config and not args.select:
        raise UserError("--write-config needs --select (it writes the config the selection chose)")
    if args.engine == "ray":
        if args.select or args.fold is not None or args.gather:
            raise UserError("--engine ray trains every fold itself: --select, --fold and --gather do not apply")
        from netad.training.runs import find_run, is_cv_run

        if not (is_cv_run(find_run(args.resume)[0]) if args.resume else args.use_cv):
            raise UserError("--engine ray runs the folds of a cross-validation: add --use-cv")
        from netad.training.ray_engine import run_cv_ray
        from netad.training.report import cv_summary

        result = run_cv_ray(cfg, run_name=args.run_name, resume=args.resume, quiet=args.quiet)
        if result is not None:
            print()
            print(cv_summary(result))
        return 0
    if args.select:
        if args.fold is not None or args.gather:
            raise UserError("--select runs its own cross-validation: --fold and --gather do not apply")
        from netad.training.select import format_selection, run_select

        chosen = run_select(cfg, run_name=args.run_name, resume=args.resume, quiet=args.quiet,
                            write_config=args.write_config)
        if chosen is not None:
            print()
            print(format_selection(chosen))
        return 0
    from netad.training.cv import train
    from netad.training.report import CVResult, cv_summary, single_summary

    result = train(cfg, cross_validate=args.use_cv, run_name=args.run_name, resume=args.resume, fold=args.fold,
                   gather=args.gather, quiet=args.quiet)
    if result is not None:  # None: a --fold job, or a DDP process other than the first (that one reports)
        print()
        print(cv_summary(result) if isinstance(result, CVResult) else single_summary(result))
    return 0


def test_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test.py", description="Evaluate a trained model at its stored threshold.")
    p.add_argument("--model", "--checkpoint", dest="checkpoint", default="checkpoints/best_model.ckpt", metavar="PATH",
                   help="checkpoint to evaluate (default: checkpoints/best_model.ckpt)")
    p.add_argument("--data", metavar="PATH", help="labelled records of the training schema: a CSV or Parquet file, "
                                                  "a folder or a glob (default: the run's test rows)")
    p.add_argument("--config", metavar="PATH",
                   help="YAML config whose data section says how to read --data (default: the saved config)")
    p.add_argument("--results", default="test_results.csv", metavar="PATH",
                   help="CSV that gains one row per run (default: test_results.csv)")
    p.add_argument("--model-name", metavar="NAME", help="name in the results file and logs (default: run/split)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals, 0 to 100000 (default 1000, 0 turns them off)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-log", action="store_true", help="no TensorBoard or W&B logging")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config, else of the checkpoint's saved config (how --data is read, "
                        "where logs go); value parsed as YAML (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


@user_errors
def test_main(argv: Optional[Sequence[str]] = None) -> int:
    args = test_parser().parse_args(argv)
    _setup_logging(quiet=True)
    from netad.evaluation.evaluate import (
        append_results, check_bootstrap, evaluate_checkpoint, format_test_result, open_model, publish_test_result,
    )

    check_bootstrap(args.bootstrap)
    mut = open_model(args.checkpoint, args.config, args.model_name, args.overrides)
    result = evaluate_checkpoint(args.checkpoint, args.data, mut=mut, n_bootstrap=args.bootstrap, seed=args.seed,
                                 progress=not args.quiet)
    print(format_test_result(result))
    print(f"Row added to {append_results(args.results, result)}")
    if not args.no_log:
        where = publish_test_result(mut, result)
        print("Logged to " + ", ".join(f"{k} {v}" for k, v in where.items()))
    return 0


def assess_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assess_model.py",
                                description="Figures and an HTML report for a trained model or a CV run's folds.")
    p.add_argument("--model", "--checkpoint", dest="checkpoint", default="checkpoints/best_model.ckpt", metavar="PATH",
                   help="checkpoint to assess (default: checkpoints/best_model.ckpt)")
    p.add_argument("--use-folds", action="store_true",
                   help="assess every fold checkpoint of the CV run (the --model's run, or --run)")
    p.add_argument("--run", metavar="RUN_FOLDER", help="CV run folder for --use-folds, e.g. checkpoints/cv-...")
    p.add_argument("--data", metavar="PATH", help="labelled records to evaluate on: a CSV or Parquet file, a folder "
                                                  "or a glob (default: the run's test rows)")
    p.add_argument("--config", metavar="PATH", help="YAML config whose data section says how to read --data")
    p.add_argument("--output", metavar="DIR",
                   help="report folder (default: reports/<run>_<split>, reports/<run>_<split>_<data file stem> "
                        "with --data, reports/<run>_folds with --use-folds)")
    p.add_argument("--model-name", metavar="NAME", help="name in the report and logs")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples, 0 to 100000 (default 1000)")
    p.add_argument("--no-log", action="store_true", help="no TensorBoard or W&B logging")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config, else of the checkpoint's saved config (how --data is read, "
                        "where logs go); value parsed as YAML (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


@user_errors
def assess_main(argv: Optional[Sequence[str]] = None) -> int:
    args = assess_parser().parse_args(argv)
    _setup_logging(quiet=True, progress=not args.quiet)
    if args.use_folds and (args.data or args.config):
        raise UserError("--use-folds scores each fold model on its own held-out rows; --data and --config do not apply")
    if args.run and not args.use_folds:
        raise UserError("--run needs --use-folds")
    from netad.evaluation.assess import assess_checkpoint, assess_folds
    from netad.evaluation.evaluate import check_bootstrap

    check_bootstrap(args.bootstrap)
    if args.use_folds:
        result = assess_folds(checkpoint=None if args.run else args.checkpoint, run=args.run, output=args.output,
                              log=not args.no_log, overrides=args.overrides)
    else:
        result = assess_checkpoint(args.checkpoint, data_path=args.data, config_path=args.config,
                                   model_name=args.model_name, output=args.output, n_bootstrap=args.bootstrap,
                                   log=not args.no_log, overrides=args.overrides, progress=not args.quiet)
    print(f"Report: {result.report} ({len(result.figures)} figures)")
    for name, path in result.figures.items():
        print(f"  {path}")
    if result.logged:
        print("Logged to " + ", ".join(f"{k} {v}" for k, v in result.logged.items()))
    return 0


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare.py",
                                description="The classifier and the unsupervised detectors on the same CV folds.")
    p.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    p.add_argument("--detectors", metavar="NAMES",
                   help="comma-separated subset, e.g. classifier,iforest,pca (default: detectors.names in the config)")
    p.add_argument("--data", "--test-data", dest="test_data", metavar="PATH",
                   help="labelled records of the same schema (CSV or Parquet; a file, a folder or a glob), "
                        "scored by every fold's models: adds test columns")
    p.add_argument("--output", metavar="DIR", help="output folder (default: reports/compare-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value parsed as YAML (repeatable)")
    p.add_argument("--no-log", action="store_true", help="no TensorBoard or W&B logging")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


@user_errors
def compare_main(argv: Optional[Sequence[str]] = None) -> int:
    args = compare_parser().parse_args(argv)
    _setup_logging(quiet=True, progress=not args.quiet)
    from netad.config import load_config

    cfg = load_config(args.config, args.overrides)
    chosen = [n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else None
    from netad.evaluation.compare import format_leaderboard, run_compare

    result = run_compare(cfg, detectors=chosen, test_data=args.test_data, output=args.output, log=not args.no_log)
    print()
    print(f"Leaderboard ({cfg.cross_validation.n_splits} folds, mean ± std; thresholds chosen on validation rows"
          + (f"; test: {result.test_data}" if result.test_data else "") + "):")
    print(format_leaderboard(result))
    print(f"Files: {', '.join(result.files.values())}")
    if result.logged:
        print("Logged to " + ", ".join(f"{k} {v}" for k, v in result.logged.items()))
    return 0


def upload_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="upload_to_hub.py",
                                description="Export a checkpoint and publish it to the Hugging Face Hub.")
    p.add_argument("--model", "--checkpoint", dest="checkpoint", default="checkpoints/best_model.ckpt", metavar="PATH",
                   help="training checkpoint to publish (default: checkpoints/best_model.ckpt)")
    p.add_argument("--repo-id", metavar="USER/NAME", help="default: huggingface.repo_id in the config")
    p.add_argument("--config", metavar="PATH", help="config for huggingface.* (default: the checkpoint's saved config)")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN, else the cached login); never printed or written")
    p.add_argument("--private", action="store_true", help="create the repo as private (or huggingface.private)")
    p.add_argument("--commit-message", metavar="M", help="commit message")
    p.add_argument("--output", metavar="DIR", help="export folder (default: exports/<run>_<split>)")
    p.add_argument("--dry-run", action="store_true", help="export and list what would be uploaded; upload nothing")
    p.add_argument("--onnx", action="store_true", help="also export model.onnx (checked against PyTorch to 1e-5)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config, else of the checkpoint's saved config (huggingface.repo_id, "
                        "huggingface.private); value parsed as YAML (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


@user_errors
def upload_main(argv: Optional[Sequence[str]] = None) -> int:
    args = upload_parser().parse_args(argv)
    _setup_logging(quiet=True, progress=not args.quiet)
    from netad.config import apply_overrides, config_from_dict, load_config
    from netad.export.hub import check_hub_reachable, check_repo_id, export_for_upload, resolve_token, upload_folder
    from netad.inference.hub import quiet_duplicate_hub_logs

    quiet_duplicate_hub_logs()
    token = None
    if Path(args.checkpoint).is_file() and args.repo_id and not args.dry_run:
        # before loading (Lightning takes seconds to import) and evaluating the model: no token or no Hub, no work
        check_repo_id(args.repo_id)
        token = resolve_token(args.token)
        check_hub_reachable()
    from netad.tracking.publish import safe_name
    from netad.models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(args.checkpoint, trained_model=True)
    meta = ckpt["netad"].get("metadata", {})
    cfg = load_config(args.config, args.overrides) if args.config else \
        config_from_dict(apply_overrides(copy.deepcopy(meta.get("config", {})), list(args.overrides)), "saved config")
    repo_id = check_repo_id(args.repo_id or cfg.huggingface.repo_id)
    if token is None and not args.dry_run:  # before the export: no token or no Hub, no work
        token = resolve_token(args.token)
        check_hub_reachable()
    default_name = f"{meta.get('run_name', 'model')}_{meta.get('split', 'best')}"
    output = Path(args.output) if args.output else Path("exports") / safe_name(default_name)
    folder = export_for_upload(args.checkpoint, output, onnx=args.onnx)  # warns per identifier-like column
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    print(f"Exported {args.checkpoint} to {folder}:")
    for name, size in files.items():
        print(f"  {name:<20} {size:>10,} bytes")
    if args.dry_run:
        print(f"Dry run: would upload these {len(files)} files to {repo_id}"
              f" ({'private' if args.private or cfg.huggingface.private else 'public'}); nothing was sent")
        return 0
    url, commit = upload_folder(folder, repo_id, token, private=args.private or cfg.huggingface.private,
                                commit_message=args.commit_message)
    print(f"Uploaded to {url}" + (f" (commit {commit[:12]})" if commit else ""))
    return 0


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict.py", description="Score records (CSV or Parquet) with a trained model.")
    p.add_argument("--model", required=True, metavar="PATH_OR_REPO",
                   help="a checkpoint (.ckpt), an exported model folder, or a Hub repo id user/name")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="records to score (no label needed): a CSV (.gz, .bz2, .xz and .zst read as they are) or "
                        "Parquet file, or a folder or a quoted glob ('flows/*.parquet') of them")
    p.add_argument("--output", required=True, metavar="PATH",
                   help="the input rows plus score and is_anomaly: a CSV file (- for stdout), a .parquet file for "
                        "Parquet input, or a folder for several input files; never the input file")
    p.add_argument("--rejects", metavar="CSV", help="rows that could not be scored (default: <output>.rejects.csv; "
                                                    "with --output - : <input stem>.rejects.csv in this folder)")
    p.add_argument("--chunk-size", type=int, metavar="N",
                   help="rows read at a time (default 100000; with --engine ray: a Ray Data block's)")
    p.add_argument("--explain", type=int, metavar="K",
                   help="K more column pairs per row: the input columns that pushed its score most "
                        "(why_<i>, why_<i>_contribution) and, for a hybrid, explained_by")
    p.add_argument("--explain-flagged", action="store_true", help="with --explain: explain the flagged rows only")
    p.add_argument("--explain-method", choices=["deeplift", "integrated_gradients"],
                   help="with --explain (default: deeplift for ReLU-like networks, else integrated_gradients)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default): this process; ray: the files scored by tasks on the Ray cluster "
                        "(RAY_ADDRESS, else a local one) into a folder of Parquet or CSV shards; needs "
                        "pip install -e .[ray]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@user_errors
def predict_main(argv: Optional[Sequence[str]] = None) -> int:
    args = predict_parser().parse_args(argv)
    _setup_logging(quiet=True)
    if args.engine == "ray":
        if args.rejects:
            raise UserError("--engine ray keeps every row in the output shards (reject_reason says why a row was "
                            "not scored): --rejects does not apply")
        from netad.serving.ray_scoring import score_with_ray

        result = score_with_ray(args.model, args.input, args.output, chunk_size=args.chunk_size,
                                progress=not args.quiet, explain=args.explain, explain_flagged=args.explain_flagged,
                                explain_method=args.explain_method)
        print(f"Scored {result.n_scored} of {result.n_rows} rows of {result.files} file"
              f"{'s' if result.files > 1 else ''} on Ray in {result.seconds:.2f} s ({result.rows_per_second:,.0f} "
              f"rows/s): {result.n_flagged} flagged as anomalies -> {result.output}")
        if result.n_rejected:
            print(f"{result.n_rejected} rows could not be scored: their score is empty and reject_reason says why")
        return 0
    from netad.serving.columnar import score_inputs

    result = score_inputs(args.model, args.input, args.output, rejects_path=args.rejects,
                          chunk_size=100_000 if args.chunk_size is None else args.chunk_size,
                          progress=not args.quiet, explain=args.explain, explain_flagged=args.explain_flagged,
                          explain_method=args.explain_method)
    report = sys.stderr if result.direct else sys.stdout  # scores on stdout: the summary must not join them
    files = f" of {result.files} files" if result.files > 1 else ""
    print(f"Scored {result.n_scored} of {result.n_rows} rows{files} in {result.seconds:.2f} s "
          f"({result.rows_per_second:,.0f} rows/s): {result.n_flagged} flagged as anomalies -> {result.output}",
          file=report)
    if result.rejects:
        where = f"{result.rejects}/*.rejects.*" if result.files > 1 else result.rejects
        print(f"{result.n_rejected} rows could not be scored -> {where} (row number and reason for each)",
              file=report)
    for col, count in result.imputed_non_numbers.items():
        print(f"warning: column '{col}': {count} cells were not numbers and were imputed like gaps "
              f"(the model's data.nan_policy imputes)", file=sys.stderr)
    return 0


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netad serve", description="REST API for a trained model (FastAPI).")
    p.add_argument("--model", required=True, metavar="PATH_OR_REPO",
                   help="a checkpoint (.ckpt), an exported model folder, or a Hub repo id user/name")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="1 to 65535 (default 8000)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key (X-API-Key)")
    p.add_argument("--max-records", type=int, default=10_000, help="records per request, 1 or more (default 10000)")
    p.add_argument("--max-body-mb", type=float, default=10.0,
                   help="request body limit in MB, more than 0 (default 10)")
    p.add_argument("--drift-window", type=int, default=10_000, metavar="N",
                   help="GET /metrics: flagged rate, unknown-category rate and per-column PSI over the last N "
                        "records (default 10000; 0: counters only)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads, 1 or more (default 1: requests are small, and idle threads spinning on "
                        "other cores cost more than they give)")
    return p


@user_errors
def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    args = serve_parser().parse_args(argv)
    # before the model loads (slow): a bad value is one line, not a traceback or a server on another port
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be between 1 and 65535")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be 1 or more")
    if args.max_records < 1:
        raise UserError(f"--max-records {args.max_records}: must be 1 or more")
    if not 0 <= args.drift_window <= 10_000_000:
        raise UserError(f"--drift-window {args.drift_window}: must be between 0 and 10000000")
    if not 0 < args.max_body_mb < float("inf"):  # NaN fails too
        raise UserError(f"--max-body-mb {args.max_body_mb}: must be a number of megabytes above 0")
    max_body_bytes = max(1, int(args.max_body_mb * 1024 * 1024))
    _setup_logging(quiet=False)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is empty or not set")
    import uvicorn

    from netad.serving.api import create_app
    from netad.inference import load_predictor

    predictor = load_predictor(args.model)
    import torch

    torch.set_num_threads(args.threads)
    app = create_app(predictor, model_name=Path(str(args.model)).stem if Path(str(args.model)).is_file()
                     else str(args.model), api_key=api_key, max_records=args.max_records,
                     max_body_bytes=max_body_bytes, drift_window=args.drift_window)
    print(f"Serving {args.model} on http://{args.host}:{args.port} (docs: /docs"
          f"{'; X-API-Key required' if api_key else ''})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def drift_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netad drift",
                                description="Is new traffic still like the model's training traffic?")
    p.add_argument("--model", required=True, metavar="PATH_OR_REPO",
                   help="a checkpoint (.ckpt), an exported model folder, or a Hub repo id user/name")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="the new records (no label needed): a CSV (.gz etc. read too) or Parquet file, or a folder "
                        "or a quoted glob of them")
    p.add_argument("--output", metavar="DIR", help="drift.csv, drift.json, drift.png (default reports/drift_<input>)")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when a column or the score drifted")
    p.add_argument("--quiet", action="store_true", help="only the verdict line")
    return p


@user_errors
def drift_main(argv: Optional[Sequence[str]] = None) -> int:
    args = drift_parser().parse_args(argv)
    _setup_logging(quiet=True)
    from netad.evaluation.drift import drift_check, format_table, write_report
    from netad.inference import load_predictor

    predictor = load_predictor(args.model)
    result = drift_check(predictor, args.input)
    from netad.data.sources import source_name

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source_name(args.input).split(".")[0]) or "input"
    out = Path(args.output) if args.output else Path("reports") / f"drift_{stem}"
    files = write_report(result, out)
    if not args.quiet:
        print(f"Drift of {result.n_rows:,} rows of {args.input} against the training rows of {args.model}:")
        print(format_table(result.rows))
        print(f"-> {files['csv']}, {files['json']}, {files['figure']}")
    print(result.verdict)
    score_drifted = any(r["drifted"] for r in result.rows if r["kind"] == "score")
    return 1 if args.fail_on_drift and (result.drifted or score_drifted) else 0


COMMANDS = {
    "train": (train_main, "train the classifier: one split, or stratified k-fold CV (train.py)"),
    "test": (test_main, "measure a trained model at its stored threshold (test.py)"),
    "assess": (assess_main, "figures and an HTML report for a model or a CV run's folds (assess_model.py)"),
    "compare": (compare_main, "the classifier and the unsupervised detectors on the same folds (compare.py)"),
    "upload": (upload_main, "export a model and publish it to the Hugging Face Hub (upload_to_hub.py)"),
    "predict": (predict_main, "score a CSV of records in batch (predict.py)"),
    "serve": (serve_main, "a REST API and web page for a model"),
    "drift": (drift_main, "new traffic against the model's training-data summary: PSI and tests per column"),
}


def _overview() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m netad <command> [options]   (or: netad <command> ...)", "",
             "Supervised network-anomaly detection with honest cross-validation.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "python -m netad <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``netad <command> ...``: the package's CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"error: unknown command '{argv[0]}'; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        else:
            print(_overview(), file=sys.stderr)
        return 2
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
