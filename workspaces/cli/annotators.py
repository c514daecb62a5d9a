"""`curate annotators add|list|remove|pause|resume`: reviewers in the project's workspace, from the CLI."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import ConfigArg, annotators_app, command, load
from .argilla import client
from .console import print_table, say, warn


@command(annotators_app, "add")
def add_command(config: Path = ConfigArg, username: str = typer.Argument(...),
                role: str = typer.Option("annotator", help="annotator or admin")) -> None:
    """Add a reviewer to the project's workspace (created with a generated password, shown once)."""
    from ..argilla_io.annotators import add_annotator

    annotator = add_annotator(client(), load(config), username, role=role)
    if annotator.password:
        say(f"created {username} ({annotator.role}); password (shown once, stored nowhere): {annotator.password}")
    else:
        say(f"{username} ({annotator.role}) is in the workspace (existing account: password unchanged)")


@command(annotators_app, "list")
def list_command(config: Path = ConfigArg) -> None:
    """The workspace's reviewers, and who is paused."""
    from ..argilla_io.annotators import list_annotators, paused

    project = load(config)
    stopped = paused(project)
    print_table(f"workspace {project.argilla.workspace}", ["username", "role", "paused"],
                [[a.username, a.role, stopped.get(a.username, {}).get("reason", "") if a.paused else ""]
                 for a in list_annotators(client(), project)])


@command(annotators_app, "remove")
def remove_command(config: Path = ConfigArg, username: str = typer.Argument(...)) -> None:
    """Remove a reviewer from the workspace (the account and the responses stay)."""
    from ..argilla_io.annotators import remove_annotator

    remove_annotator(client(), load(config), username)
    say(f"{username} removed from the workspace")


@command(annotators_app, "pause")
def pause_command(config: Path = ConfigArg, username: str = typer.Argument(...),
                  reason: str = typer.Option("paused by hand", help="Why (recorded in the run dir).")) -> None:
    """Stop a reviewer: out of the workspace, responses no longer counted (kept, flagged)."""
    from ..argilla_io.annotators import pause_annotator

    pause_annotator(client(), load(config), username, reason)
    warn(f"{username} paused: {reason}")


@command(annotators_app, "resume")
def resume_command(config: Path = ConfigArg, username: str = typer.Argument(...)) -> None:
    """Let a paused reviewer back in."""
    from ..argilla_io.annotators import resume_annotator

    resume_annotator(client(), load(config), username)
    say(f"{username} resumed")


@command(annotators_app, "qualify")
def qualify_command(config: Path = ConfigArg, username: str = typer.Argument(...)) -> None:
    """Give a reviewer their qualification batch (gold items in a dataset only they can open); their responses
    count once they reach `qualification.min_agreement` on it. `curate sync` reads the answers."""
    from ..argilla_io.qualification import publish_qualification
    from ..review.qualification import next_batch

    project = load(config)
    batch = next_batch(project, username)
    if not batch:
        say(f"{username} is qualified: no batch to answer")
        return
    dataset = publish_qualification(project, client(), username, batch)
    say(f"{username}: qualification batch of {len(batch)} gold items in dataset {dataset} (workspace "
        f"{project.argilla.workspace}-qual-{username}); their responses count once they reach "
        f"{project.qualification.min_agreement:.0%} agreement")


@command(annotators_app, "standing")
def standing_command(config: Path = ConfigArg) -> None:
    """Every reviewer's qualification standing and its evidence (as the last `curate sync` worked it out)."""
    from ..review.qualification import qualification_section

    section = qualification_section(load(config))
    if section is None:
        say("no qualification standing yet (no `qualification` section, or no `curate sync` since)")
        return
    print_table(f"qualification ({section['question']}, {section['min_agreement']:.0%} on {section['batch']} "
                "gold items)", ["reviewer", "status", "evidence", "scored", "accuracy", "95% Wilson"],
                [[r["annotator"], r["status"], r["evidence"], str(r["scored"]),
                  "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}",
                  "n/a" if r["wilson_low"] is None else f"[{r['wilson_low']:.3f}, {r['wilson_high']:.3f}]"]
                 for r in section["reviewers"]])
