"""Publish an exported model to the Hugging Face Hub (huggingface_hub's HfApi; HF_ENDPOINT is honoured).

The token is passed to the client and nowhere else: it is never printed, logged or written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from netad.errors import UserError

#: the files of an exported model, the only ones an upload sends
ARTIFACT_FILES = ("model.safetensors", "config.json", "README.md", "model.onnx")

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


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


def export_for_upload(checkpoint: str | Path, output: str | Path, say: Any = None, onnx: bool = False) -> Path:
    """Export the checkpoint, with test hold-out metrics in the model card when the training data is here."""
    from netad.evaluation.evaluate import evaluate_checkpoint
    from netad.hub.export import export_checkpoint

    test = None
    try:
        result = evaluate_checkpoint(checkpoint, n_bootstrap=1000, progress=True)
        test = result.to_json()
    except UserError as exc:  # no training data or no recorded test rows: the card says "not measured"
        if say:
            say(f"test metrics not in the model card: {exc}")
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
        raise UserError(f"the Hub answered HTTP {status} for '{repo_id}': {_first_line(exc)}") from None
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


def hub_http_reason(exc: Exception, revision: Optional[str] = None) -> str:
    """What a Hub HTTP error on a model download means, in words: not found (or private), gated, unauthorised."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub.errors import (
        DisabledRepoError, GatedRepoError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    response = getattr(exc, "response", None)
    status = response.status_code if response is not None else None
    if isinstance(exc, GatedRepoError):
        return f"the repo is gated (HTTP {status}): accept its conditions on the Hub, then pass a token or log in"
    if isinstance(exc, RepositoryNotFoundError):
        return (f"no such model repo on the Hub at {hf_constants.ENDPOINT} (HTTP {status}; if it is private, "
                "pass a token, set HF_TOKEN or log in with `hf auth login`)")
    if isinstance(exc, RevisionNotFoundError):
        return f"no revision '{revision or 'main'}' in the repo"
    if isinstance(exc, RemoteEntryNotFoundError):
        name = str(response.url).rsplit("/", 1)[-1] if response is not None else "config.json"
        return f"the repo has no {name}: not an exported netad model"
    if isinstance(exc, DisabledRepoError):
        return "the repo is disabled on the Hub"
    if status in (401, 403):
        return f"the Hub refused access (HTTP {status}, unauthorised): check the token (HF_TOKEN or `hf auth login`)"
    return f"the Hub answered HTTP {status} ({_first_line(exc)})"


def quiet_duplicate_hub_logs() -> None:
    """huggingface_hub prints its log lines (retries, for one) with its own handler and also passes them on to the
    root logger; where that has a handler too (the command-line tools' logging), every line would print twice."""
    import logging

    from huggingface_hub.utils import logging as hf_logging

    if logging.getLogger().handlers:
        hf_logging.disable_propagation()


def transport_error() -> type:
    """The HTTP client's connection/timeout error class (huggingface_hub ships its own httpx build)."""
    try:
        from huggingface_hub.utils import httpx as client
    except ImportError:  # older huggingface_hub: plain httpx or requests
        import httpx as client
    return client.TransportError


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
