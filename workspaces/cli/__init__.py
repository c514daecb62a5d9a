"""The `curate` command line: one Typer app, one thin command per stage of the loop.

    config -> label / embed / student -> calibrate -> gate -> triage -> select -> publish -> (reviewers) -> sync
           -> report -> push

Commands live in one module per stage family and only parse options, call the stage and print its result. Every
`CurateError` ends as one message and the exit code of its class (see `workspaces.errors`).
"""

# Import order is the order `curate --help` lists the commands in: the loop's order.
from . import server  # noqa: F401,I001 - registers the commands
from . import generate  # noqa: F401
from . import judge  # noqa: F401
from . import review  # noqa: F401
from . import redact  # noqa: F401
from . import argilla  # noqa: F401
from . import annotators  # noqa: F401
from . import agreement  # noqa: F401
from . import curated  # noqa: F401
from . import demo  # noqa: F401
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """The `curate` console script."""
    app()
