"""`curate push`: publish the curated dataset (splits + card) to the Hugging Face Hub or to a local folder.

- Hub: `DatasetDict.push_to_hub` (token from the argument, `HF_TOKEN` or the stored login), then the card. Unchanged
  files are not committed (`huggingface_hub` compares them with the remote's), so re-pushing the same content creates
  no commit; `push_to_hub` deletes the split files it did not write, so a dropped split disappears.
- Folder: the Hub's layout (`data/{split}-00000-of-00001.parquet` + README.md) that `load_dataset(DIR)` reads back;
  files are only rewritten when their bytes change and a dropped split's file is removed.

The token is never printed, logged, written to the run directory or put in the card.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

from ..agreement import Report, read_report
from ..config import ProjectConfig
from ..errors import HubError
from ..rundir import PUSH, write_json
from .build import CuratedDataset, build_curated
from .card import card_body, card_metadata, render_card

__all__ = ["MARKER", "PushError", "PushResult", "export_argilla_dataset", "push"]

_DATA_DIR = "data"
MARKER = ".curate-dataset.json"  # written into every folder push creates; push writes only into such folders


class PushError(HubError):
    """A push could not be done (no/invalid token, no repo id, unreachable Hub, unsafe folder). Never holds a token."""


@dataclass
class PushResult:
    """Where the curated dataset went and what it holds."""

    target: Literal["hub", "dir"]
    location: str
    rows: dict[str, int]
    excluded: dict[str, int]
    changed: bool
    repo_id: Optional[str] = None
    commit: Optional[str] = None
    private: Optional[bool] = None
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def push(config: ProjectConfig, *, to: Union[str, Path, None] = None, repo_id: Optional[str] = None,
         private: Optional[bool] = None, token: Optional[str] = None) -> PushResult:
    """Build the curated dataset of the run and publish it.

    Args:
        config: the project.
        to: `"hub"`, or a folder; by default the Hub when `repo_id` is given, else `hub.local_dir` or
            `<run dir>/curated`.
        repo_id: the Hub dataset repo (`ORG/NAME`); default `hub.repo_id`.
        private: create the Hub repo private; default `hub.private`.
        token: Hugging Face token; default `HF_TOKEN` or the stored login.

    Raises:
        CurationError: the run lacks `annotations.parquet` (run `curate sync` first) or holds unreadable files.
        PushError: no repo id, no or invalid token, unreachable Hub, or an unsafe target folder.
    """
    curated = build_curated(config)
    report = read_report(config, required=False)
    if sum(curated.rows.values()) == 0:
        excluded = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in curated.excluded.items() if v) or "none"
        raise PushError(f"nothing to push: no item of {config.name} has a curated label (excluded: {excluded}); "
                        "sync human responses first (`curate sync`)")
    to_hub = to == "hub" or (to is None and repo_id is not None)
    if to_hub:
        result = _push_hub(config, curated, report, repo_id, private, token)
    else:
        if private is not None:
            raise PushError("--private/--public applies to a Hub repo; a folder has no visibility "
                            "(use --to hub --repo-id ORG/NAME, or drop the flag)")
        folder = Path(to) if to is not None else (config.hub.local_dir or config.run_path / "curated")
        result = _push_dir(config, curated, report, folder)
    _record(config, result)
    return result


def export_argilla_dataset(client: Any, config: ProjectConfig, repo_id: Optional[str] = None, *,
                           token: Optional[str] = None, private: Optional[bool] = None,
                           with_records: bool = True) -> str:
    """Export the project's Argilla dataset itself (settings + records with responses and suggestions) to the Hub.

    For teams that keep Argilla as the source of truth: `rg.Dataset.from_hub(repo_id)` restores it. Returns the
    repo URL.
    """
    repo_id = _repo_id(config, repo_id)
    token = _checked_token(token, repo_id)
    dataset = client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)
    if dataset is None:
        raise PushError(f"Argilla has no dataset {config.argilla.dataset!r} in workspace "
                        f"{config.argilla.workspace!r}: run `curate publish` first")
    private = config.hub.private if private is None else private
    with _hub_errors(repo_id, token):
        dataset.to_hub(repo_id=repo_id, with_records=with_records, token=token, private=private)
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/datasets/{repo_id}"


# ---- Hub ---------------------------------------------------------------------------------------------------------

def _push_hub(config: ProjectConfig, curated: CuratedDataset, report: Optional[Report],
              repo_id: Optional[str], private: Optional[bool], token: Optional[str]) -> PushResult:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    repo_id = _repo_id(config, repo_id)
    token = _checked_token(token, repo_id)
    want_private = config.hub.private if private is None else private
    api = HfApi(token=token)
    notes = list(curated.notes)
    with _hub_errors(repo_id, token):
        try:
            info = api.repo_info(repo_id, repo_type="dataset", token=token)
            before, is_private = info.sha, bool(info.private)
            if private is not None and is_private != private:
                notes.append(f"{repo_id} already exists as {'private' if is_private else 'public'}: the private flag "
                             "only applies when the repo is created (change it in the repo settings)")
        except RepositoryNotFoundError:
            before, is_private = None, want_private
        dataset = curated.to_dataset_dict(config)
        summary = ", ".join(f"{name} {n}" for name, n in curated.rows.items())
        dataset.push_to_hub(repo_id, token=token, private=want_private,
                            commit_message=f"curate push: {config.name} ({summary})")
        _push_card(api, repo_id, token, card_metadata(config, curated), card_body(config, curated, report))
        after = api.repo_info(repo_id, repo_type="dataset", token=token).sha
    return PushResult(target="hub", location=f"{api.endpoint}/datasets/{repo_id}", rows=curated.rows,
                      excluded=curated.excluded, changed=after != before, repo_id=repo_id, commit=after,
                      private=is_private, by_source=curated.counts_by_source(), notes=notes)


def _push_card(api: Any, repo_id: str, token: str, metadata: dict[str, Any], body: str) -> None:
    """Merge our metadata and body into the card `push_to_hub` wrote; upload only if it changed."""
    from huggingface_hub import DatasetCard, hf_hub_download

    path = hf_hub_download(repo_id, "README.md", repo_type="dataset", token=token, endpoint=api.endpoint)
    current = Path(path).read_text(encoding="utf-8")
    card = DatasetCard(current)
    for key, value in metadata.items():
        if key != "configs":  # `push_to_hub` owns the data files of each split
            card.data[key] = value
    card.text = body
    text = str(card)
    if text != current:
        api.upload_file(path_or_fileobj=text.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                        repo_type="dataset", token=token, commit_message="curate push: dataset card")


def _repo_id(config: ProjectConfig, repo_id: Optional[str]) -> str:
    repo_id = repo_id or config.hub.repo_id
    if not repo_id:
        raise PushError(f"no Hub repo id: pass --repo-id ORG/NAME or set hub.repo_id in "
                        f"{config.source_path or config.name}")
    return repo_id


def _checked_token(token: Optional[str], repo_id: str) -> str:
    """The token to use (argument, `HF_TOKEN`, stored login), checked against the Hub's whoami."""
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise PushError(f"no Hugging Face token to push to {repo_id}: set HF_TOKEN or run `hf auth login`")
    with _hub_errors(repo_id, token):
        HfApi(token=token).whoami(token=token)
    return token


@contextmanager
def _hub_errors(repo_id: str, token: Optional[str]) -> Iterator[None]:
    """Turn Hub failures into a PushError that says what to do, with any token scrubbed out."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        yield
    except PushError:
        raise
    except RepositoryNotFoundError:
        raise PushError(f"{repo_id}: dataset repo not found or not accessible with this token") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise PushError(f"the Hugging Face token was rejected by {constants.ENDPOINT} (401 Unauthorized): "
                            "check HF_TOKEN or run `hf auth login --force`") from None
        if status == 403:
            raise PushError(f"the Hugging Face token may not write to {repo_id} (403 Forbidden): use a token with "
                            "write access to that namespace") from None
        raise PushError(f"push to {repo_id} failed: {_scrub(str(err), token)}") from None
    except Exception as err:
        if any(c.__name__ in ("TransportError", "ConnectionError") for c in type(err).__mro__):
            raise PushError(f"could not reach the Hub at {constants.ENDPOINT}: {_scrub(str(err), token)}") from None
        raise


def _scrub(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


# ---- local folder ------------------------------------------------------------------------------------------------

def _push_dir(config: ProjectConfig, curated: CuratedDataset, report: Optional[Report],
              folder: Path) -> PushResult:
    folder = folder.resolve()
    _claim_folder(folder, config)
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    written: list[str] = []
    changed = False
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:  # one split at a time, streamed by `datasets` into a file next to its target: no split is held as bytes
        for split in curated.tables:
            relative = f"{_DATA_DIR}/{split}-00000-of-00001.parquet"
            split_set = curated.to_dataset(config, split)
            changed |= _put_if_changed(folder / relative, lambda path: split_set.to_parquet(str(path)))
            written.append(relative)
            del split_set
    finally:
        if not quiet:
            enable_progress_bars()
    card = render_card(config, curated, report).encode("utf-8")
    changed |= _put_if_changed(folder / "README.md", lambda path: path.write_bytes(card))
    written.append("README.md")
    owned = _owned_files(folder)
    for stale in sorted((folder / _DATA_DIR).glob("*.parquet")):
        relative = f"{_DATA_DIR}/{stale.name}"
        if relative not in written and relative in owned:  # only files an earlier push wrote
            stale.unlink()
            changed = True
    _write_marker(folder, config, sorted(written))
    return PushResult(target="dir", location=str(folder), rows=curated.rows, excluded=curated.excluded,
                      changed=changed, by_source=curated.counts_by_source(), notes=list(curated.notes))


def _put_if_changed(target: Path, write: Callable[[Path], Any]) -> bool:
    """`write(path)` into a temporary file next to `target`; rename it over `target` only when its bytes differ
    (compared in chunks, never read whole). Returns whether `target` changed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        if target.is_file() and filecmp.cmp(temporary, target, shallow=False):
            return False
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _owned_files(folder: Path) -> set[str]:
    try:
        return set(json.loads((folder / MARKER).read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError):
        return set()


def _claim_folder(folder: Path, config: ProjectConfig) -> None:
    """Write only into a new or empty folder, or one an earlier `curate push` wrote (it carries `MARKER`).

    Anything else (a project root, a folder with its own `data/`) is refused before a byte is written.
    """
    if folder.exists() and not folder.is_dir():
        raise PushError(f"{folder}: exists and is not a folder; choose a new folder for the curated dataset")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not (folder / MARKER).is_file():
        raise PushError(f"{folder}: not empty and not written by `curate push` (no {MARKER}); refusing to write "
                        "there so nothing of yours is overwritten or deleted. Choose a new or empty folder.")


def _write_marker(folder: Path, config: ProjectConfig, files: list[str]) -> None:
    payload = {"written_by": "curate push", "project": config.name, "files": files}
    try:
        if json.loads((folder / MARKER).read_text(encoding="utf-8")) == payload:
            return
    except (OSError, ValueError):
        pass
    write_json(folder / MARKER, payload)


def _record(config: ProjectConfig, result: PushResult) -> None:
    """Keep where the last push went in `<run dir>/push.json` (no credentials)."""
    write_json(PUSH.path(config.run_path), asdict(result))
