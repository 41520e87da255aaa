"""Command-line entry points. Bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from netad.errors import UserError


def user_errors(func: Callable[..., int]) -> Callable[..., int]:
    """Turn UserError (and Ctrl-C) into one line and an exit code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted: resume with --resume <run folder>", file=sys.stderr)
            return 130

    return wrapper


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    os.environ.setdefault("WANDB_SILENT", "true")
    if quiet:
        import warnings

        warnings.filterwarnings("ignore")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train the anomaly classifier: one train/validation split, or stratified k-fold CV.",
    )
    p.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    p.add_argument("--use-cv", action="store_true", help="stratified k-fold cross-validation, then a final model")
    p.add_argument("--resume", metavar="PATH", help="run folder (or a checkpoint in it) of an interrupted run")
    p.add_argument("--fold", type=int, metavar="K", help="run fold K only (0-based), e.g. for job arrays")
    p.add_argument("--run-name", metavar="NAME", help="run folder name under checkpoint.save_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value parsed as YAML (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    return p


@user_errors
def train_main(argv: Optional[Sequence[str]] = None) -> int:
    args = train_parser().parse_args(argv)
    _setup_logging(args.quiet)
    from netad.config import load_config

    if args.resume and (args.overrides or args.run_name):
        raise UserError("--resume continues a run with its saved config and name; --set and --run-name cannot change them")
    if args.resume:  # a resume uses the run's saved config and kind (CV or single split)
        from netad.training.cv import find_run, is_cv_run

        run, cfg = find_run(args.resume)
        cv_mode = is_cv_run(run)
    else:
        cfg = load_config(args.config, args.overrides)  # before importing torch: config errors answer at once
        cv_mode = args.use_cv
    if args.fold is not None and not cv_mode:
        raise UserError("--fold needs --use-cv")

    from netad.training.cv import format_table, run_cv, run_single

    say = (lambda _m: None) if args.quiet else (lambda m: print(m, flush=True))
    if cv_mode:
        result = run_cv(None if args.resume else cfg, run_name=args.run_name, resume=args.resume, only_fold=args.fold,
                        quiet=args.quiet, say=say)
        if result is None:
            return 0
        print()
        print(f"Cross-validation ({len(result.folds)} folds), metrics on each fold's held-out rows:")
        print(format_table(result))
        print()
        print(result.verdict["message"])
        print(f"Results: {result.files['cv_results_json']} and {result.files['cv_results_csv']}")
        if result.final_checkpoint:
            print(f"Final model: {result.final_checkpoint}")
        return 0
    fit = run_single(None if args.resume else cfg, run_name=args.run_name, resume=args.resume, quiet=args.quiet,
                     say=say)
    m = fit.val_metrics
    print()
    print(f"Validation (threshold {fit.threshold:.3f}, chosen on these rows): "
          + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    print(f"Best checkpoint (epoch {fit.best_epoch}) copied to the default path: "
          f"{cfg.checkpoint.save_dir}/best_model.ckpt")
    return 0


def test_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test.py", description="Evaluate a trained model at its stored threshold.")
    p.add_argument("--checkpoint", default="checkpoints/best_model.ckpt", help="default: checkpoints/best_model.ckpt")
    p.add_argument("--data", metavar="PATH", help="labelled CSV of the training schema (default: the run's test rows)")
    return p


@user_errors
def test_main(argv: Optional[Sequence[str]] = None) -> int:
    args = test_parser().parse_args(argv)
    _setup_logging(quiet=True)
    from netad.evaluation.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data)
    print(f"{args.checkpoint} on {result['data']}: {result['n_rows']} rows, {result['n_anomalies']} anomalies")
    print(f"threshold {result['threshold']:.4f} (chosen on validation rows at training time)")
    for name, value in result["metrics"].items():
        print(f"  {name:<10} {value:.4f}")
    return 0


def not_yet(script: str, meanwhile: str) -> int:
    print(f"error: {script} is not available in this version yet; meanwhile use {meanwhile}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``netad <command> ...``: the package's CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "test": test_main}
    if not argv or argv[0] not in commands:
        print(f"usage: netad {{{','.join(commands)}}} [options]", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
