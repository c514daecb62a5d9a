"""Project configuration: one YAML file per labeling project, validated with pydantic.

A config says where the items come from, which columns are shown to reviewers, which questions are asked (and at
which level of measurement their agreement is computed), the guideline, the LLM, the Argilla dataset and the run
directory. Every stage reads the same file, so `curate label`, `publish`, `sync`, `report` and `push` agree on names.

Relative paths in a config are resolved against the config file's own folder.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AlphaLevel",
    "ArgillaConfig",
    "ConfigError",
    "DataConfig",
    "FieldConfig",
    "HubConfig",
    "HumanLabelsConfig",
    "LLMBackend",
    "LLMConfig",
    "MetadataConfig",
    "ProjectConfig",
    "QuestionConfig",
    "QuestionKind",
    "ValueMapping",
    "load_config",
]

_NAME = r"^[a-z0-9_-]+$"
_DOCS = "See README.md, section 'Configuration'."


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid. The message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlphaLevel(str, Enum):
    """Level of measurement used for Krippendorff's alpha."""

    nominal = "nominal"
    ordinal = "ordinal"
    interval = "interval"
    ratio = "ratio"


class QuestionKind(str, Enum):
    """The Argilla question type a question is published as."""

    label = "label"
    rating = "rating"
    text = "text"


class FieldConfig(_Strict):
    """A column shown to reviewers as an Argilla `TextField`."""

    name: str = Field(pattern=_NAME)
    column: Optional[str] = None
    title: Optional[str] = None
    markdown: bool = False
    required: bool = True

    @property
    def source_column(self) -> str:
        return self.column or self.name


class QuestionConfig(_Strict):
    """A question asked of reviewers (and possibly of the LLM).

    `labels` maps each label to its description (label questions); `values` lists the rating scale (rating
    questions). `level` is the level of measurement for agreement; by default nominal for labels, ordinal for ratings.
    """

    name: str = Field(pattern=_NAME)
    kind: QuestionKind
    title: Optional[str] = None
    description: Optional[str] = None
    labels: Optional[dict[str, str]] = None
    values: Optional[list[int]] = None
    level: Optional[AlphaLevel] = None
    required: bool = True

    @model_validator(mode="after")
    def _check_kind(self) -> "QuestionConfig":
        if self.kind == QuestionKind.label:
            if not self.labels or len(self.labels) < 2:
                raise ValueError("a label question needs `labels` with at least two entries")
            if self.values is not None:
                raise ValueError("`values` is for rating questions; a label question takes `labels`")
        elif self.kind == QuestionKind.rating:
            if not self.values or len(self.values) < 2:
                raise ValueError("a rating question needs `values` with at least two entries (e.g. [1, 2, 3, 4, 5])")
            if self.labels is not None:
                raise ValueError("`labels` is for label questions; a rating question takes `values`")
            if any(v < 0 or v > 10 for v in self.values):
                raise ValueError("Argilla rating values must lie in 0..10")
        return self

    @property
    def alpha_level(self) -> AlphaLevel:
        if self.level is not None:
            return self.level
        return AlphaLevel.nominal if self.kind != QuestionKind.rating else AlphaLevel.ordinal

    @property
    def allowed_values(self) -> list[Union[str, int]]:
        """Every value a response may take, in scale order."""
        if self.kind == QuestionKind.label:
            return list(self.labels or {})
        if self.kind == QuestionKind.rating:
            return list(self.values or [])
        return []


class MetadataConfig(_Strict):
    """A column published as Argilla metadata, so reviewers can filter and sort by it."""

    name: str = Field(pattern=_NAME)
    column: Optional[str] = None
    kind: Literal["terms", "integer", "float"] = "terms"
    title: Optional[str] = None

    @property
    def source_column(self) -> str:
        return self.column or self.name


class ValueMapping(_Strict):
    """Where one question's recorded human value lives in an annotation entry, and how it maps to the question."""

    key: str
    map: Optional[dict[Union[int, str], Union[int, str]]] = None


class HumanLabelsConfig(_Strict):
    """Recorded human labels shipped with the data (a list of per-annotator entries in one column).

    Used to replay real annotators through Argilla (the demo) and as the human gold set.
    """

    column: str = "annotations"
    annotator_key: str = "annotator_id"
    values: dict[str, ValueMapping]


class DataConfig(_Strict):
    """The items to label: a jsonl / csv / parquet file with one item per row."""

    path: Path
    id_column: str = "id"
    where: dict[str, Any] = Field(default_factory=dict, description="column == value filters applied on load")
    limit: Optional[int] = Field(default=None, ge=1)
    license: Optional[str] = None
    attribution: Optional[str] = None


class ArgillaConfig(_Strict):
    """Where the project lives in Argilla."""

    dataset: str = Field(pattern=_NAME)
    workspace: str = Field(default="curate", pattern=_NAME)
    min_submitted: int = Field(default=1, ge=1, description="overlap: submitted responses needed per record")
    allow_extra_metadata: bool = False


class LLMBackend(str, Enum):
    """Which Distilabel LLM runs the judge."""

    local = "local"
    openai = "openai"
    inference_endpoints = "inference-endpoints"
    llama_cpp = "llama-cpp"
    transformers = "transformers"


class LLMConfig(_Strict):
    """The LLM that labels items (see `pipelines`)."""

    backend: LLMBackend = LLMBackend.local
    model: Optional[str] = Field(default=None, description="model id / path; default: the offline SmolLM2-135M GGUF")
    base_url: Optional[str] = None
    api_key_env: Optional[str] = Field(default=None, description="name of the env var holding the API key")
    questions: list[str] = Field(default_factory=list, description="questions the LLM answers")
    few_shot: int = Field(default=8, ge=0)
    few_shot_path: Optional[Path] = None
    temperature: float = Field(default=0.0, ge=0.0)
    max_new_tokens: int = Field(default=16, ge=1)
    batch_size: int = Field(default=8, ge=1)
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)


class HubConfig(_Strict):
    """Where curated splits go (see `curate push`)."""

    repo_id: Optional[str] = None
    private: bool = False
    local_dir: Optional[Path] = None
    seed: int = 42
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    validation_size: float = Field(default=0.1, ge=0.0, lt=1.0)
    exclude_no_majority: bool = True
    license: Optional[str] = None


class ProjectConfig(_Strict):
    """One labeling project."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    data: DataConfig
    fields: list[FieldConfig] = Field(min_length=1)
    questions: list[QuestionConfig] = Field(min_length=1)
    metadata: list[MetadataConfig] = Field(default_factory=list)
    guidelines: str = ""
    human_labels: Optional[HumanLabelsConfig] = None
    argilla: ArgillaConfig
    run_dir: Optional[Path] = None
    llm: Optional[LLMConfig] = None
    hub: HubConfig = Field(default_factory=HubConfig)
    source_path: Optional[Path] = Field(default=None, exclude=True, description="the YAML file this came from")

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[FieldConfig]) -> list[FieldConfig]:
        _require_unique([f.name for f in fields], "field")
        return fields

    @field_validator("questions")
    @classmethod
    def _unique_questions(cls, questions: list[QuestionConfig]) -> list[QuestionConfig]:
        _require_unique([q.name for q in questions], "question")
        return questions

    @model_validator(mode="after")
    def _check_references(self) -> "ProjectConfig":
        names = {q.name for q in self.questions}
        if self.human_labels is not None:
            unknown = sorted(set(self.human_labels.values) - names)
            if unknown:
                raise ValueError(f"human_labels.values names unknown question(s) {unknown}; known: {sorted(names)}")
        if self.llm is not None:
            unknown = sorted(set(self.llm.questions) - names)
            if unknown:
                raise ValueError(f"llm.questions names unknown question(s) {unknown}; known: {sorted(names)}")
        return self

    def question(self, name: str) -> QuestionConfig:
        """The question called `name`; a clear error for an unknown one."""
        for question in self.questions:
            if question.name == name:
                return question
        raise ConfigError(f"unknown question {name!r} in {self.source_path or self.name}; "
                          f"known: {[q.name for q in self.questions]}")

    @property
    def run_path(self) -> Path:
        """The run directory: `run_dir` from the config, else `runs/<name>/` under the current directory."""
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    @property
    def guideline_hash(self) -> str:
        """A short hash of the guideline text and the questions, to version what reviewers and the LLM were told."""
        payload = self.guidelines + "\n" + "\n".join(q.model_dump_json() for q in self.questions)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _require_unique(names: list[str], what: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} name(s): {duplicates}")


def _resolve(base: Path, value: Optional[Path]) -> Optional[Path]:
    if value is None or value.is_absolute():
        return value
    return (base / value).resolve()


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        lines.append(f"{path}: {key}: {message}")
    return "\n".join(lines) + f"\n{_DOCS}"


def load_config(path: Union[str, Path]) -> ProjectConfig:
    """Read and validate a project config.

    Raises:
        ConfigError: naming the file and the offending key (a missing file, bad YAML, a wrong or missing key).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    base = path.resolve().parent
    data = config.data.model_copy(update={"path": _resolve(base, config.data.path)})
    updates: dict[str, Any] = {"data": data, "source_path": path.resolve()}
    if config.run_dir is not None:
        updates["run_dir"] = _resolve(base, config.run_dir)
    if config.llm is not None and config.llm.few_shot_path is not None:
        updates["llm"] = config.llm.model_copy(update={"few_shot_path": _resolve(base, config.llm.few_shot_path)})
    if config.hub.local_dir is not None:
        updates["hub"] = config.hub.model_copy(update={"local_dir": _resolve(base, config.hub.local_dir)})
    return config.model_copy(update=updates)


def slug(text: str) -> str:
    """A lowercase name that matches Argilla's `^[a-z0-9_-]+$` (e.g. an annotator id -> a username)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_") or "x"
