"""`curate push`: publish the curated dataset (splits + card) to the Hugging Face Hub or to a local folder.

- Hub: `DatasetDict.push_to_hub` (token from the argument, `HF_TOKEN` or the stored login), then the card. Unchanged
  files are not committed (`huggingface_hub` compares them with the remote's), so re-pushing the same content creates
  no commit; `push_to_hub` deletes the split files it did not write, so a dropped split disappears.
- Folder: the Hub's layout (`data/{split}-00000-of-00001.parquet` + README.md) that `load_dataset(DIR)` reads back;
  files are only rewritten when their bytes change and a dropped split's file is removed. `MARKER` keeps the sha256
  of every file push wrote: a file there that push did not write, or that changed since, is never replaced or
  deleted without `force` (`DataLossError` naming it; every file is staged first, so nothing has changed then).
  The folder is the user's to share: its files get the user's usual mode (umask), not the run directory's 0600.

The token is never printed, logged, written to the run directory or put in the card.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

from ..agreement import Report, read_report
from ..config import ProjectConfig
from ..errors import CurateError, DataLossError, HubError
from ..ledger import decisions_head, record, require_intact
from ..rundir import PUSH, file_sha256, write_json
from .build import CuratedDataset, build_curated
from .card import card_body, card_metadata, render_card

__all__ = ["MARKER", "NothingToPushError", "PushError", "PushResult", "export_argilla_dataset", "push"]

_DATA_DIR = "data"
MARKER = ".curate-dataset.json"  # written into every folder push creates; push writes only into such folders


class PushError(HubError):
    """A push could not be done (no/invalid token, no repo id, unreachable Hub, unsafe folder). Never holds a token."""


class NothingToPushError(CurateError):
    """No item has a curated label, so there is no dataset to push: the loop refuses (exit 1), not the Hub."""


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
    version: Optional[str] = None  # the Hub commit, or the folder's hash (sha256 of its files' sha256s)
    ledger_head: Optional[str] = None  # the ledger hash the card carries (its last decision before the push)


def push(config: ProjectConfig, *, to: Union[str, Path, None] = None, repo_id: Optional[str] = None,
         private: Optional[bool] = None, token: Optional[str] = None, force: bool = False) -> PushResult:
    """Build the curated dataset of the run and publish it.

    Args:
        config: the project.
        to: `"hub"`, or a folder; by default the Hub when `repo_id` is given, else `hub.local_dir` or
            `<run dir>/curated`.
        repo_id: the Hub dataset repo (`ORG/NAME`); default `hub.repo_id`.
        private: create the Hub repo private; default `hub.private`.
        token: Hugging Face token; default `HF_TOKEN` or the stored login.
        force: (folder only) replace or delete files there that push did not write, or that changed since it
            wrote them.

    Raises:
        NothingToPushError: no item has a curated label (exit 1); nothing was written.
        CurationError: the run lacks `annotations.parquet` (run `curate sync` first) or holds unreadable files.
        PushError: no repo id, no or invalid token, unreachable Hub, an unsafe target folder, or a flag that does
            not apply to the target (`private` for a folder, `force` for the Hub).
        DataLossError: (folder, without `force`) the push would replace or delete a file it did not write, or one
            changed since it wrote it; nothing was changed.
    """
    require_intact(config.run_path)  # the card carries the ledger's head: a broken chain is repaired first
    curated = build_curated(config)
    report = read_report(config, required=False)
    if sum(curated.rows.values()) == 0:
        excluded = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in curated.excluded.items() if v) or "none"
        raise NothingToPushError(f"nothing to push: no item of {config.name} has a curated label (excluded: "
                                 f"{excluded}); sync human responses first (`curate sync`)")
    to_hub = to == "hub" or (to is None and repo_id is not None)
    if to_hub:
        if force:
            raise PushError("--force applies to a folder; the Hub keeps every earlier version in the repo's history, "
                            "so a push there replaces nothing for good (drop the flag)")
        result = _push_hub(config, curated, report, repo_id, private, token)
    else:
        if private is not None:
            raise PushError("--private/--public applies to a Hub repo; a folder has no visibility "
                            "(use --to hub --repo-id ORG/NAME, or drop the flag)")
        folder = Path(to) if to is not None else (config.hub.local_dir or config.run_path / "curated")
        result = _push_dir(config, curated, report, folder, force)
    _record(config, result)
    _ledger_rows(config, curated, result)
    return result


def _ledger_rows(config: ProjectConfig, curated: CuratedDataset, result: PushResult) -> int:
    """Append one `push` entry per curated row to the run's ledger: the row's sha256, its source and gate, where it
    went and the dataset version (the Hub commit, or the folder's hash); a row pushed unchanged to the same version
    is not appended again."""
    decisions = []
    for split, table in curated.tables.items():
        for batch in table.to_batches():
            for row in batch.to_pylist():
                gates = sorted({str(v) for k, v in row.items() if k.endswith("gate_id") and v})
                decisions.append((f"{split}|{row['item_id']}", {
                    "item_id": row["item_id"], "split": split, "source": row.get("source"), "gate_ids": gates,
                    "row_sha256": _row_sha256(row), "target": result.target, "location": result.location,
                    "version": result.version}))
    return record(config.run_path, "push", decisions)


def _row_sha256(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def export_argilla_dataset(client: Any, config: ProjectConfig, repo_id: Optional[str] = None, *,
                           token: Optional[str] = None, private: Optional[bool] = None,
                           with_records: bool = True) -> str:
    """Export the project's Argilla dataset itself (settings + records with responses and suggestions) to the Hub.

    For teams that keep Argilla as the source of truth: `rg.Dataset.from_hub(repo_id)` restores it. The fields hold
    the form stored in Argilla (Markdown with what the UI would render escaped, so the restored dataset stays safe in
    the UI); `workspaces.argilla_io.source_text` turns a field back into the source text. Returns the repo URL.
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
                      private=is_private, by_source=curated.counts_by_source(), notes=notes, version=after,
                      ledger_head=decisions_head(config.run_path).hash)


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

def _push_dir(config: ProjectConfig, curated: CuratedDataset, report: Optional[Report], folder: Path,
              force: bool) -> PushResult:
    """Stage every file next to its target, then (no conflict, or `force`) rename the changed ones into place."""
    folder = folder.resolve()
    _claim_folder(folder, config)
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    recorded = _recorded_files(folder)
    new_data_dir = not (folder / _DATA_DIR).exists()
    staged: dict[str, Path] = {}  # file -> the temporary holding its new bytes
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        for split in curated.tables:  # one at a time, streamed by `datasets` to disk: no split is held as bytes
            split_set = curated.to_dataset(config, split)
            relative = f"{_DATA_DIR}/{split}-00000-of-00001.parquet"
            staged[relative] = _stage(folder / relative, lambda path: split_set.to_parquet(str(path)))
            del split_set
        card = render_card(config, curated, report).encode("utf-8")
        staged["README.md"] = _stage(folder / "README.md", lambda path: path.write_bytes(card))
        new = {relative: file_sha256(temporary) for relative, temporary in staged.items()}
        stale = [relative for relative in (f"{_DATA_DIR}/{path.name}" for path in sorted(
            (folder / _DATA_DIR).glob("*.parquet"))) if relative in recorded and relative not in new]  # dropped splits
        current = {relative: file_sha256(folder / relative) for relative in [*new, *stale]
                   if (folder / relative).is_file()}
        conflicts = _conflicts(current, new, recorded)
        if conflicts and not force:
            if new_data_dir:
                _discard(staged)
                (folder / _DATA_DIR).rmdir()
            raise DataLossError(f"{folder}: curate push would overwrite or delete "
                                + "; ".join(f"{name} ({why})" for name, why in conflicts.items())
                                + ". Nothing was changed. Move them away, or pass --force to replace them.")
        changed = bool(stale)
        for relative, temporary in staged.items():
            if current.get(relative) != new[relative]:
                os.replace(temporary, folder / relative)
                changed = True
        for relative in stale:
            (folder / relative).unlink(missing_ok=True)
        _write_marker(folder, config, new)
    finally:
        if not quiet:
            enable_progress_bars()
        _discard(staged)
    notes = list(curated.notes) + [f"--force: replaced {name} ({why})" for name, why in conflicts.items()]
    version = hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()
    return PushResult(target="dir", location=str(folder), rows=curated.rows, excluded=curated.excluded,
                      changed=changed, by_source=curated.counts_by_source(), notes=notes, version=version,
                      ledger_head=decisions_head(config.run_path).hash)


def _conflicts(current: dict[str, str], new: dict[str, str],
               recorded: dict[str, Optional[str]]) -> dict[str, str]:
    """The files present that push would replace or delete but may not (file -> why): not written by push, changed
    since it wrote them, or listed by an older push that kept no sha256. A file that already holds the new bytes is
    no conflict."""
    conflicts = {}
    for relative, digest in current.items():
        if new.get(relative) == digest:
            continue
        if relative not in recorded:
            why = "not written by curate push"
        elif recorded[relative] is None:
            why = "written by an older curate push that kept no checksum, so a change of yours cannot be ruled out"
        elif recorded[relative] != digest:
            why = "changed since curate push wrote it"
        else:
            continue
        conflicts[relative] = why if relative in new else f"{why}; it would be deleted"
    return conflicts


def _discard(staged: dict[str, Path]) -> None:
    """Remove the temporaries not renamed into place."""
    for temporary in staged.values():
        temporary.unlink(missing_ok=True)


def _stage(target: Path, write: Callable[[Path], Any]) -> Path:
    """A new temporary file next to `target` (same folder: the rename into place is atomic), filled by `write(path)`.

    It gets the user's usual mode (0666 less the umask), not the run directory's 0600: the folder is theirs to share.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _recorded_files(folder: Path) -> dict[str, Optional[str]]:
    """What earlier pushes wrote into `folder`: file -> sha256 (None: listed by name only, by an older push)."""
    try:
        files = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if isinstance(files, list):
        return {str(name): None for name in files}
    return {str(name): str(digest) for name, digest in files.items()} if isinstance(files, dict) else {}


def _claim_folder(folder: Path, config: ProjectConfig) -> None:
    """Write only into a new or empty folder, or one an earlier `curate push` wrote (it carries `MARKER`).

    Anything else (a project root, a folder with its own `data/`) is refused before a byte is written, even with
    `--force`.
    """
    if folder.exists() and not folder.is_dir():
        raise PushError(f"{folder}: exists and is not a folder; choose a new folder for the curated dataset")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not (folder / MARKER).is_file():
        raise PushError(f"{folder}: not empty and not written by `curate push` (no {MARKER}); refusing to write "
                        "there so nothing of yours is overwritten or deleted. Choose a new or empty folder.")


def _write_marker(folder: Path, config: ProjectConfig, files: dict[str, str]) -> None:
    """`MARKER`: this folder is curate push's, and the sha256 of every file it wrote (rewritten only on change)."""
    payload = {"written_by": "curate push", "project": config.name, "files": dict(sorted(files.items()))}
    text = (json.dumps(payload, indent=2) + "\n").encode("utf-8")
    marker = folder / MARKER
    if marker.is_file() and marker.read_bytes() == text:
        return
    temporary = _stage(marker, lambda path: path.write_bytes(text))
    os.replace(temporary, marker)


def _record(config: ProjectConfig, result: PushResult) -> None:
    """Keep where the last push went in `<run dir>/push.json` (no credentials)."""
    write_json(PUSH.path(config.run_path), asdict(result))
