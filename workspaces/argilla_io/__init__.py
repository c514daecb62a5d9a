"""Every call to the Argilla server: connection, the wire layer, settings, records, publish, sync, replay, and the
embedded server itself (`server/`).

This package never imports the judge, review or agreement stages: what they decide reaches it as run-dir files or
as plain arguments (which items to publish, which to publish without a suggestion).
"""

from .connection import connect
from .publish import PublishError, PublishResult, publish
from .records import build_records, display_text, source_text
from .settings import build_settings, ensure_workspace, get_dataset
from .sync import SyncError, SyncResult, sync

__all__ = [
    "PublishError",
    "PublishResult",
    "SyncError",
    "SyncResult",
    "build_records",
    "build_settings",
    "connect",
    "display_text",
    "ensure_workspace",
    "get_dataset",
    "publish",
    "source_text",
    "sync",
]
