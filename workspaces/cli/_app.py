"""The one Typer app and the command class that turns every `CurateError` into one message and its exit code."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
import typer
import typer.core

from ..config import ProjectConfig, load_config
from ..errors import CurateError
from ..rundir import RunDirWarning
from .console import print_error, warn

__all__ = ["ConfigArg", "app", "command", "load", "server_app", "annotators_app"]


class CurateCommand(typer.core.TyperCommand):
    """A command whose `CurateError`s end as one plain message on stderr and the error class's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*(Workspace|Dataset|User) with name .* not found")
                warnings.showwarning = _plain_run_dir_warning(warnings.showwarning)
                return super().invoke(ctx)
        except CurateError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None


def _plain_run_dir_warning(show: Any) -> Any:
    """`warnings.showwarning` that prints a `RunDirWarning` as one `warning:` line (others as `show` does)."""
    def showwarning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, RunDirWarning):
            warn(str(message))
        else:
            show(message, category, *args, **kwargs)
    return showwarning


app = typer.Typer(
    name="curate",
    help="Human-calibrated LLM labeling on Argilla + Distilabel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server_app = typer.Typer(help="The embedded Argilla server (or the one ARGILLA_API_URL names).", no_args_is_help=True)
annotators_app = typer.Typer(help="Reviewers in the project's Argilla workspace.", no_args_is_help=True)
app.add_typer(server_app, name="server")
app.add_typer(annotators_app, name="annotators")

ConfigArg = typer.Argument(..., help="Project config YAML (see configs/).")


def command(group: typer.Typer, name: str, **kwargs: Any) -> Any:
    """`@command(app, "publish")`: register a command with `CurateCommand`."""
    return group.command(name, cls=CurateCommand, **kwargs)


def load(path: Path) -> ProjectConfig:
    """Load a config (a `ConfigError` ends the command with exit code 2)."""
    return load_config(path)
