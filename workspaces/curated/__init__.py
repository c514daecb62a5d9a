"""What leaves the loop: the curated splits with provenance (build), their dataset card (card), and the push to the
Hugging Face Hub or a local folder (push). A label no human gave is published only under an open gate."""

from ..items import load_gold_ids
from .build import SOURCES, SPLITS, CuratedDataset, CurationError, build_curated, curated_features
from .card import card_body, card_metadata, render_card
from .push import NothingToPushError, PushError, PushResult, export_argilla_dataset, push

__all__ = [
    "CuratedDataset",
    "CurationError",
    "NothingToPushError",
    "PushError",
    "PushResult",
    "SOURCES",
    "SPLITS",
    "build_curated",
    "card_body",
    "card_metadata",
    "curated_features",
    "export_argilla_dataset",
    "load_gold_ids",
    "push",
    "render_card",
]
