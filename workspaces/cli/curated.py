"""`curate push`: the curated splits and their card, to the Hub or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import ConfigArg, app, command, load
from .console import print_table, say, warn


@command(app, "push")
def push_command(
    config: Path = ConfigArg,
    to: Optional[str] = typer.Option(None, "--to", help="'hub', or a folder. Default: the Hub when --repo-id is "
                                                         "given, else hub.local_dir or <run dir>/curated."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Hub dataset repo ORG/NAME (default hub.repo_id)."),
    private: Optional[bool] = typer.Option(None, "--private/--public", help="Visibility of a new Hub repo "
                                                                            "(default hub.private)."),
    force: bool = typer.Option(False, "--force", help="Folder only: replace or delete files there that push did "
                                                      "not write, or that changed since it wrote them (without it: "
                                                      "refused, exit 8, nothing changed). A non-empty folder push "
                                                      "never wrote is refused even so."),
) -> None:
    """Publish the curated splits and their dataset card to the Hugging Face Hub or a local folder."""
    from ..curated import push

    project = load(config)
    result = push(project, to=to, repo_id=repo_id, private=private, force=force)
    rows = [[split, str(n), ", ".join(f"{s} {c}" for s, c in result.by_source.get(split, {}).items())]
            for split, n in result.rows.items()]
    print_table(f"{project.name}: curated dataset", ["split", "rows", "by source"], rows)
    excluded = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.excluded.items() if v)
    if excluded:
        say(f"excluded: {excluded}")
    for note in result.notes:
        warn(note)
    where = f"{result.location} (commit {result.commit[:10]})" if result.commit else result.location
    status = "updated" if result.changed else "no change (same content as before)"
    say(f"published to {where}: {status}")


@command(app, "verify")
def verify_command(
    config: Path = ConfigArg,
    rebase: bool = typer.Option(False, "--rebase", help="Move a broken ledger aside (kept) and start a new chain "
                                                        "whose first entry records the old head and why."),
    reason: str = typer.Option("re-based by `curate verify --rebase`", "--reason", help="Why (kept in the new "
                                                                                          "chain's first entry)."),
) -> None:
    """Walk the run's hash-chained decision ledger and name the first broken entry (exit 3 when broken)."""
    from ..ledger import LedgerError, rebase as rebase_ledger, verify

    project = load(config)
    found = verify(project.run_path)
    if rebase:
        old, new = rebase_ledger(project.run_path, reason)
        say(f"was: {old.describe()}")
        say(f"re-based: a new chain, head {new.hash}; the old ledger is kept next to it")
        return
    if not found.ok:
        raise LedgerError(f"{found.describe()}. Restore the file, or run `curate verify {config} --rebase`")
    say(found.describe())
