"""The Distilabel side of curate: everything that asks a model (label, prefer, embed). See pipelines/README.md.

Names are imported lazily so that `curate --help` does not pay for importing Distilabel and torch.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# Noise from Distilabel 1.5.3 under pydantic 2.1x (its own models), not from anything a user can fix.
warnings.filterwarnings("ignore", message=r"The 'default' attribute with value None", module=r"pydantic\..*")
warnings.filterwarnings("ignore", message=r"A custom validator is returning a value other than `self`")
warnings.filterwarnings("ignore", message=r"The `sentences` argument was renamed")

__all__ = [
    "LabelRun",
    "PreferenceRun",
    "embed_items",
    "embed_texts",
    "label_items",
    "prefer_items",
    "read_embeddings",
    "read_labels",
    "read_preferences",
]

_WHERE = {
    "LabelRun": "label",
    "label_items": "label",
    "read_labels": "label",
    "PreferenceRun": "prefer",
    "prefer_items": "prefer",
    "read_preferences": "prefer",
    "embed_items": "embed",
    "embed_texts": "embed",
    "read_embeddings": "embed",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
