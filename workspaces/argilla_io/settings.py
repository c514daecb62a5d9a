"""Dataset settings from a project config, and bringing an existing dataset in line with a changed config.

Argilla lets some settings change on a dataset that has records (titles, descriptions, guidelines, markdown
rendering, overlap, new metadata and vector properties) and not others (the set of fields and questions, a question's
type, the labels of a label question, the values of a rating question). `reconcile_settings` applies the first kind
and refuses the second with a message that says what changed and how to migrate.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import argilla as rg

from ..config import MetadataConfig, ProjectConfig, QuestionConfig, QuestionKind
from ..errors import ConfigError

__all__ = [
    "PublishError",
    "VECTOR_NAME",
    "build_settings",
    "confidence_metadata_name",
    "ensure_workspace",
    "get_dataset",
    "reconcile_settings",
]

VECTOR_NAME = "text_embedding"


class PublishError(ConfigError):
    """The dataset cannot be published as configured (e.g. its labels changed after records were logged)."""


QUESTION_DESCRIPTION_LIMIT = 1000  # argilla-server 2.8: the longest question description it accepts


def confidence_metadata_name(question: str) -> str:
    """Metadata property that carries the labeler's confidence for `question` (sortable/filterable in the UI)."""
    return f"llm_confidence_{question}"


def _question_description(question: QuestionConfig) -> Optional[str]:
    """The question's description, followed (label questions) by each label's description, so that a changed label
    description reaches the reviewers as a changed question description."""
    labels = _label_descriptions(question)
    if labels and not _labels_fit(question, labels):
        labels = "The labels are described in the guidelines."  # Argilla takes 1,000 characters here
    return "\n\n".join(part for part in (question.description, labels) if part) or None


def _label_descriptions(question: QuestionConfig) -> Optional[str]:
    if question.kind not in (QuestionKind.label, QuestionKind.multi_label, QuestionKind.span):
        return None
    return "\n".join(f"- **{k}**: {v}" for k, v in (question.labels or {}).items() if v) or None


def _labels_fit(question: QuestionConfig, labels: str) -> bool:
    """Whether the question's description can hold its label descriptions (with room for the picks note)."""
    return len(labels) + len(question.description or "") + 60 <= QUESTION_DESCRIPTION_LIMIT


def _guidelines(config: ProjectConfig) -> Optional[str]:
    """The guidelines, followed by the label descriptions of every question whose description could not hold
    them (so a reviewer always sees them, and a changed one still changes what the server holds)."""
    parts = [config.guidelines or ""]
    for question in config.questions:
        labels = _label_descriptions(question)
        if labels and not _labels_fit(question, labels):
            parts.append(f"**{question.title or question.name}**: the labels\n\n{labels}")
    return "\n\n".join(p for p in parts if p) or None


def _picks_note(question: QuestionConfig, description: Optional[str]) -> Optional[str]:
    """A multi-label question's description, ending with how many labels to pick (Argilla does not enforce it;
    sync and curation do, counting each response that breaks it)."""
    low, high = question.min, question.max
    note = (f"Pick {low} to {high} labels." if low is not None and high is not None else
            f"Pick at least {low} label(s)." if low is not None else
            f"Pick at most {high} label(s)." if high is not None else None)
    return "\n\n".join(part for part in (description, note) if part) or None


def _question(question: QuestionConfig) -> Any:
    title = question.title or question.name
    description = _question_description(question)
    if question.kind == QuestionKind.label:
        return rg.LabelQuestion(name=question.name, title=title, labels=list(question.labels or {}),
                                description=description, required=question.required)
    if question.kind == QuestionKind.multi_label:
        return rg.MultiLabelQuestion(name=question.name, title=title, labels=list(question.labels or {}),
                                     description=_picks_note(question, description), required=question.required)
    if question.kind == QuestionKind.span:  # spans may not overlap: Argilla's default, and the shape's rule
        assert question.field is not None
        return rg.SpanQuestion(name=question.name, field=question.field, labels=list(question.labels or {}),
                               allow_overlapping=False, title=title, description=description,
                               required=question.required)
    if question.kind == QuestionKind.rating:
        return rg.RatingQuestion(name=question.name, title=title, values=list(question.values or []),
                                 description=description, required=question.required)
    return rg.TextQuestion(name=question.name, title=title, description=description, required=question.required)


def _metadata_property(spec: MetadataConfig) -> Any:
    title = spec.title or spec.name
    if spec.kind == "integer":
        return rg.IntegerMetadataProperty(name=spec.name, title=title)
    if spec.kind == "float":
        return rg.FloatMetadataProperty(name=spec.name, title=title)
    return rg.TermsMetadataProperty(name=spec.name, title=title)


def build_settings(config: ProjectConfig, *, vector_dimensions: Optional[int] = None,
                   suggested: Optional[list[str]] = None) -> rg.Settings:
    """Argilla settings for a project: fields, questions, metadata (+ labeler confidence), vectors, guideline, overlap.

    Every text field is rendered as Markdown because Argilla's UI sanitises Markdown but shows a plain text field as
    raw HTML (`innerHTML`, or an unsandboxed `<iframe srcdoc>`); `records.display_text` escapes only what the
    renderer would act on, so the text shows exactly as written, and `records.source_text` gives it back.
    `suggested` names the questions that get labeler suggestions (each gets a confidence metadata property; by
    default the `llm.questions`).
    """
    metadata = [_metadata_property(m) for m in config.metadata]
    confidence = list(config.llm.questions) if config.llm else []
    confidence += [q for q in suggested or [] if q not in confidence]
    for name in confidence:
        metadata.append(rg.FloatMetadataProperty(name=confidence_metadata_name(name), title=f"LLM confidence: {name}"))
    vectors = [rg.VectorField(name=VECTOR_NAME, title="Text embedding", dimensions=vector_dimensions)] \
        if vector_dimensions else []
    return rg.Settings(
        fields=[rg.TextField(name=f.name, title=f.title or f.name, use_markdown=True, required=f.required)
                for f in config.fields],
        questions=[_question(q) for q in config.questions],
        metadata=metadata,
        vectors=vectors,
        guidelines=_guidelines(config),
        allow_extra_metadata=config.argilla.allow_extra_metadata,
        distribution=rg.TaskDistribution(min_submitted=config.argilla.min_submitted),
    )


def ensure_workspace(client: rg.Argilla, name: str) -> rg.Workspace:
    """The workspace called `name`, created if missing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns "Workspace ... not found" before we create it
        workspace = client.workspaces(name)
    if workspace is None:
        try:
            workspace = rg.Workspace(name=name, client=client).create()
        except Exception:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workspace = client.workspaces(name)  # created meanwhile by a concurrent publish
            if workspace is None:
                raise
    return workspace


def get_dataset(client: rg.Argilla, config: ProjectConfig) -> Optional[rg.Dataset]:
    """The project's Argilla dataset, or None if it was never published (no SDK "not found" warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if client.workspaces(config.argilla.workspace) is None:
            return None
        return client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)


def _options(question: Any) -> list[str]:
    if isinstance(question, rg.LabelQuestion):
        return [str(label) for label in question.labels]
    if isinstance(question, rg.RatingQuestion):
        return [str(value) for value in question.values]
    return []


def _incompatible(dataset: rg.Dataset, wanted: rg.Settings) -> list[str]:
    """The differences Argilla cannot apply to a dataset with records."""
    problems = []
    have_fields = {f.name for f in dataset.settings.fields}
    want_fields = {f.name for f in wanted.fields}
    if have_fields != want_fields:
        problems.append(f"fields {sorted(have_fields)} on the server, {sorted(want_fields)} in the config")
    have = {q.name: q for q in dataset.settings.questions}
    want = {q.name: q for q in wanted.questions}
    if set(have) != set(want):
        problems.append(f"questions {sorted(have)} on the server, {sorted(want)} in the config")
    for name in sorted(set(have) & set(want)):
        if type(have[name]) is not type(want[name]):
            problems.append(f"question {name!r} is a {type(have[name]).__name__} on the server, "
                            f"a {type(want[name]).__name__} in the config")
        elif sorted(_options(have[name])) != sorted(_options(want[name])):
            problems.append(f"question {name!r} has options {_options(have[name])} on the server, "
                            f"{_options(want[name])} in the config")
    return problems


def reconcile_settings(dataset: rg.Dataset, wanted: rg.Settings, config: ProjectConfig) -> list[str]:
    """Apply the config's changes that Argilla allows on an existing dataset; refuse the others.

    Returns what was changed (empty when the dataset already matches).

    Raises:
        PublishError: a change Argilla cannot apply (what changed, and how to migrate).
    """
    problems = _incompatible(dataset, wanted)
    if problems:
        raise PublishError(
            f"{config.source_path}: dataset {config.argilla.dataset!r} (workspace {config.argilla.workspace!r}) "
            f"cannot take this config: " + "; ".join(problems) + ". Argilla cannot change these once a dataset "
            "has records. To migrate, publish to a new dataset (change argilla.dataset), or pass --recreate to "
            "delete this dataset and publish it again (after `curate sync`: its responses stay in the run dir).")
    changes: list[str] = []
    settings = dataset.settings
    fields = {f.name: f for f in wanted.fields}
    for field in settings.fields:
        target = fields[field.name]
        if field.title != target.title:
            field.title = target.title
            changes.append(f"field {field.name!r} title")
        if getattr(field, "use_markdown", None) != target.use_markdown:
            field.use_markdown = target.use_markdown
            changes.append(f"field {field.name!r} rendering")
    questions = {q.name: q for q in wanted.questions}
    for question in settings.questions:
        target = questions[question.name]
        if question.title != target.title:
            question.title = target.title
            changes.append(f"question {question.name!r} title")
        if (question.description or None) != (target.description or None):
            question.description = target.description
            changes.append(f"question {question.name!r} description")
    if (settings.guidelines or None) != (wanted.guidelines or None):
        settings.guidelines = wanted.guidelines
        changes.append("guidelines")
    if settings.distribution.min_submitted != config.argilla.min_submitted:
        # record statuses are recomputed by the server's worker after this update
        settings.distribution = rg.TaskDistribution(min_submitted=config.argilla.min_submitted)
        changes.append("overlap (min_submitted)")
    existing = {m.name for m in settings.metadata}
    for prop in wanted.metadata:
        if prop.name not in existing:
            settings.metadata.add(prop)
            changes.append(f"metadata {prop.name!r}")
    existing_vectors = {v.name for v in settings.vectors}
    for vector in wanted.vectors:
        if vector.name not in existing_vectors:
            settings.vectors.add(vector)
            changes.append(f"vector {vector.name!r}")
    if changes:
        settings.update()
    return changes
