"""`python -m workspaces` runs the `curate` CLI."""

from .cli import app

app()
