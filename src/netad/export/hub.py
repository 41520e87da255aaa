"""Publish an exported model to the Hugging Face Hub (huggingface_hub's HfApi; HF_ENDPOINT is honoured).

The token is passed to the client and nowhere else: it is never printed, logged or written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from netad.errors import UserError, first_line
from netad.inference.hub import REPO_ID, transport_error

#: the files of an exported model, the only ones an upload sends
ARTIFACT_FILES = ("model.safetensors", "config.json", "README.md", "model.onnx")


@dataclass
class UploadResult:
    folder: Path
    files: dict[str, int]
    repo_id: str
    url: Optional[str] = None
    commit: Optional[str] = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


def check_repo_id(repo_id: Optional[str]) -> str:
    if not repo_id:
        raise UserError("no repo id: pass --repo-id user/name or set huggingface.repo_id in the config")
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", "-", ".")):
        raise UserError(f"repo id '{repo_id}' is not of the form user/name (letters, digits, '-', '_', '.')")
    return repo_id


def resolve_token(explicit: Optional[str]) -> str:
    """--token, else HF_TOKEN, else the cached login (`hf auth login`)."""
    if explicit:
        return explicit
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    cached = get_token()
    if not cached:
        raise UserError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    return cached


def export_for_upload(checkpoint: str | Path, output: str | Path, onnx: bool = False) -> Path:
    """Export the checkpoint, with test hold-out metrics in the model card when the training data is here."""
    from netad.evaluation.evaluate import evaluate_checkpoint
    from netad.export.artifact import export_checkpoint

    test = None
    try:
        result = evaluate_checkpoint(checkpoint, n_bootstrap=1000, progress=True)
        test = result.to_json()
    except UserError as exc:  # no training data or no recorded test rows: the card says "not measured"
        logging.getLogger("netad").info(f"test metrics not in the model card: {exc}")
    return export_checkpoint(checkpoint, output, test=test, onnx=onnx)


def upload_folder(folder: Path, repo_id: str, token: str, *, private: bool = False,
                  commit_message: Optional[str] = None) -> tuple[str, str]:
    """Create the repo if needed and upload the folder; returns (repo URL, commit id)."""
    from huggingface_hub import HfApi
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 allow_patterns=list(ARTIFACT_FILES),  # never whatever else is in the folder
                                 commit_message=commit_message or f"Upload netad model ({folder.name})")
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise UserError(f"the Hub refused the token (HTTP {status}): check --token, HF_TOKEN or your login, "
                            f"and that it may write to '{repo_id}'") from None
        raise UserError(f"the Hub answered HTTP {status} for '{repo_id}': {first_line(exc)}") from None
    except (transport_error(), ConnectionError, OSError) as exc:
        raise UserError(f"cannot reach the Hub at {hf_constants.ENDPOINT} ({type(exc).__name__})") from None
    return str(url), getattr(info, "oid", "") or ""


def check_hub_reachable() -> None:
    """One request to HF_ENDPOINT, without retries and within HF_HUB_ETAG_TIMEOUT, so that an unreachable Hub
    is one line before the checkpoint is loaded and evaluated. Any HTTP answer counts: the upload reports the rest."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import get_session

    try:
        get_session().head(hf_constants.ENDPOINT, timeout=hf_constants.HF_HUB_ETAG_TIMEOUT)
    except (transport_error(), OSError) as exc:
        raise UserError(f"cannot reach the Hub at {hf_constants.ENDPOINT} ({type(exc).__name__}: no network?)") \
            from None


