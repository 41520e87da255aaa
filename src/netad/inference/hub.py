"""Fetching an exported model's files from the Hugging Face Hub (or its local cache), with one-line reasons
when that fails. The publishing side is :mod:`netad.export.hub`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from netad.errors import ModelLoadError, first_line

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


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
    return f"the Hub answered HTTP {status} ({first_line(exc)})"


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


def hub_files(repo_id: str, *, revision: Optional[str], cache_dir: Any, force_download: bool, token: Any,
               local_files_only: bool) -> tuple[Path, Path]:
    """config.json and model.safetensors of a Hub repo: downloaded, or from the local cache when downloads are off
    (``local_files_only``, HF_HUB_OFFLINE) or the Hub cannot be reached.

    ``hf_hub_download`` retries a failed connection to a file it has not cached five times, with back-off (about
    25 s, no setting shortens it); one metadata request without retries first (``get_hf_file_metadata``, within
    HF_HUB_ETAG_TIMEOUT) tells an unreachable Hub apart at once, and says why a repo is not there."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, is_offline_mode
    from huggingface_hub.errors import (
        FileMetadataError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled,
    )

    if not REPO_ID.match(repo_id):
        raise ModelLoadError(f"{repo_id}: no such folder, and not a Hub repo id (user/name)")
    unreachable: Optional[BaseException] = None
    offline = local_files_only or is_offline_mode()
    try:
        if not offline:
            try:
                get_hf_file_metadata(hf_hub_url(repo_id, CONFIG_NAME, revision=revision), token=token)
            except FileMetadataError:
                raise ModelLoadError(f"{repo_id}: {constants.ENDPOINT} does not answer like a Hugging Face Hub "
                                     "(check HF_ENDPOINT)") from None
            except HfHubHTTPError:
                raise  # the Hub answered (not found, unauthorised, ...): said below
            except (transport_error(), OSError) as exc:
                unreachable, offline = exc, True  # the local cache may still have it
        paths = [Path(hf_hub_download(repo_id=repo_id, filename=name, revision=revision, cache_dir=cache_dir,
                                      force_download=force_download and not offline, token=token,
                                      local_files_only=offline)) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except ModelLoadError:
        raise
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if unreachable is not None:
            raise ModelLoadError(f"{repo_id}: cannot reach the Hub at {constants.ENDPOINT} "
                                 f"({type(unreachable).__name__}: no network?), and the model is not in the local "
                                 "cache") from None
        why = "local_files_only" if local_files_only else "HF_HUB_OFFLINE is set"
        raise ModelLoadError(f"{repo_id}: not in the local cache, and downloads are off ({why})") from None
    except HfHubHTTPError as exc:
        raise ModelLoadError(f"{repo_id}: {hub_http_reason(exc, revision)}") from None
    except HFValidationError as exc:
        raise ModelLoadError(f"{repo_id}: not a Hub repo id ({first_line(exc)})") from None
    except (transport_error(), OSError) as exc:
        raise ModelLoadError(f"{repo_id}: download from {constants.ENDPOINT} failed ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None
    return paths[0], paths[1]
