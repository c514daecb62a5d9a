"""`curate label`: a Distilabel pipeline that labels a project's items with the configured LLM.

Pipeline (one run per question the LLM answers)::

    LoadDataFromDicts(item_id, question, text)
      -> ClassifyWithLogprobs   (Task: guideline + label descriptions + k few-shot examples -> JSON answer + logprobs)
      -> LabelProbabilities     (Step: parse the answer, probabilities over the allowed labels, status / error)
      -> WriteLabelCheckpoint   (Step: appends each finished batch to <run dir>/labels.parts/)

Output: `<run dir>/labels.parquet`, one row per (item_id, question) with `label`, `confidence`, `probabilities`
(a JSON object string; `read_labels` decodes it), `model`, `prompt_hash`, `raw_output`, `status`, `error`, `run_id`,
`labeled_at`. A killed run resumes from its checkpoint parts; rows already labeled with the same model and prompt hash
are never sent to the model again.
"""


import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence

import pandas as pd
from distilabel.steps import Step, StepInput
from distilabel.steps.tasks import Task
from pydantic import Field, PrivateAttr

from workspaces.config import ConfigError, LLMConfig, ProjectConfig, QuestionConfig, QuestionKind, TaskKind
from workspaces.items import LABELS_FILE, load_items, read_run_file, recorded_labels

from .scoring import AnswerError, label_probabilities, parse_answer

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM
    from distilabel.steps.typing import StepOutput
    from distilabel.typing import ChatType

__all__ = [
    "ClassifyWithLogprobs",
    "LABELS_FILE",
    "LABEL_COLUMNS",
    "LabelProbabilities",
    "LabelRun",
    "LabelSpec",
    "WriteLabelCheckpoint",
    "build_label_spec",
    "item_text",
    "label_items",
    "offline_citations",
    "read_labels",
    "run_label_pipeline",
]

PARTS_DIR = "labels.parts"
LABEL_COLUMNS = ["item_id", "question", "label", "confidence", "probabilities", "model", "prompt_hash", "raw_output",
                 "status", "error", "run_id", "labeled_at"]
TEMPLATE_VERSION = "label-v1"
TASK_NAME = "classify"
_DOCS = "See pipelines/README.md."

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelSpec:
    """Everything the LLM is told for one question: system prompt, allowed labels, few-shot examples, JSON key."""

    question: str
    labels: List[str]
    system: str
    examples: List[tuple[str, str]] = field(default_factory=list)
    key: str = "label"

    @property
    def schema(self) -> Dict[str, Any]:
        """JSON schema of the answer (constrains generation where the backend supports it)."""
        return {"type": "object", "properties": {self.key: {"type": "string", "enum": list(self.labels)}},
                "required": [self.key]}

    def prefix(self) -> List[Dict[str, str]]:
        """System message + few-shot turns: the part of every prompt that does not depend on the item."""
        messages = [{"role": "system", "content": self.system}]
        for text, label in self.examples:
            messages.append({"role": "user", "content": text})
            messages.append({"role": "assistant", "content": json.dumps({self.key: label})})
        return messages

    @property
    def prompt_hash(self) -> str:
        """Hash of the rendered template, guideline, label descriptions and few-shot examples."""
        payload = json.dumps({"template": TEMPLATE_VERSION, "messages": self.prefix(), "schema": self.schema},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def item_text(config: ProjectConfig, row: Dict[str, Any]) -> str:
    """An item as the LLM sees it: one `Title: value` line per non-empty field (`llm.fields`, default all)."""
    shown = set(config.llm.fields) if config.llm is not None and config.llm.fields else None
    lines = []
    for spec in config.fields:
        if shown is not None and spec.name not in shown:
            continue
        value = row.get(spec.source_column)
        if value is None or (isinstance(value, float) and pd.isna(value)) or not str(value).strip():
            continue
        lines.append(f"{spec.title or spec.name}: {str(value).strip()}")
    return "\n".join(lines)


def _label_values(question: QuestionConfig) -> Dict[str, str]:
    if question.kind == QuestionKind.label:
        return dict(question.labels or {})
    if question.kind == QuestionKind.rating:
        return {str(v): "" for v in question.values or []}
    raise ConfigError(f"llm.questions: {question.name!r} is a text question; the LLM answers label/rating questions")


def _system_prompt(config: ProjectConfig, question: QuestionConfig, values: Dict[str, str]) -> str:
    lines = [config.guidelines.strip()] if config.guidelines.strip() else []
    lines.append(f"Question: {question.title or question.name}")
    if question.description:
        lines.append(question.description.strip())
    lines.append("Allowed labels:")
    for value, description in values.items():
        lines.append(f'- "{value}": {description}' if description else f'- "{value}"')
    choices = ", ".join(f'"{v}"' for v in values)
    lines.append(f'Reply with a JSON object {{"label": ...}} whose label is one of {choices}, and nothing else.')
    return "\n".join(lines)


def _few_shot(config: ProjectConfig, question: QuestionConfig, values: Sequence[str], exclude: set[str],
              exclude_texts: set[str]) -> List[tuple[str, str]]:
    llm = config.llm or LLMConfig()
    if llm.few_shot == 0 or llm.few_shot_path is None:
        return []
    pool_config = config.model_copy(update={"data": config.data.model_copy(
        update={"path": llm.few_shot_path, "where": {}, "limit": None})})
    pool = load_items(pool_config)
    if config.human_labels is None or question.name not in config.human_labels.values:
        raise ConfigError(f"{config.source_path}: llm.few_shot_path needs human_labels for {question.name!r} "
                          f"(few-shot examples are items with a clear human majority). {_DOCS}")
    votes = recorded_labels(config, pool)
    votes = votes[votes["question"] == question.name]
    by_label: Dict[str, List[str]] = {str(v): [] for v in values}
    for item_id, group in votes.groupby("item_id", sort=True):
        counts = group["value"].astype(str).value_counts()
        if len(group) >= 2 and counts.iloc[0] * 2 > len(group) and counts.index[0] in by_label:
            by_label[counts.index[0]].append(str(item_id))
    rows = {row["item_id"]: row for row in pool.to_dict(orient="records")}
    rng = random.Random(llm.few_shot_seed)
    queues = {}
    for label, ids in by_label.items():
        ids = [i for i in ids if i not in exclude and item_text(config, rows[i]) not in exclude_texts]
        rng.shuffle(ids)
        queues[label] = ids
    examples: List[tuple[str, str]] = []
    while len(examples) < llm.few_shot and any(queues.values()):
        for label in values:
            if queues.get(label) and len(examples) < llm.few_shot:
                examples.append((item_text(config, rows[queues[label].pop()]), label))
    return examples


def build_label_spec(config: ProjectConfig, question_name: str, items: Optional[pd.DataFrame] = None) -> LabelSpec:
    """The prompt for one question: guideline, label descriptions and few-shot examples.

    Few-shot examples come from `llm.few_shot_path` items with a clear human majority (more than half of at least
    two annotators), balanced over labels, and never one of `items` (by id or by identical text).
    """
    question = config.question(question_name)
    values = _label_values(question)
    exclude: set[str] = set()
    exclude_texts: set[str] = set()
    if items is not None:
        exclude = set(items["item_id"].astype(str))
        exclude_texts = {item_text(config, row) for row in items.to_dict(orient="records")}
    examples = _few_shot(config, question, list(values), exclude, exclude_texts)
    return LabelSpec(question=question.name, labels=list(values), system=_system_prompt(config, question, values),
                     examples=examples)


# --------------------------------------------------------------------------------------------------------------------
# Distilabel components
# --------------------------------------------------------------------------------------------------------------------

class ClassifyWithLogprobs(Task):
    """Asks the LLM for one label per item, as JSON, keeping the model's token log-probabilities.

    The prompt is the question's system message (guideline + label descriptions), its few-shot turns, then the item.
    `format_output` never raises, so Distilabel keeps the `llm_<name>_logprobs` column on every row; a failed model
    call (an exception for the whole batch) becomes rows with `generation=None` and `model_error` set.

    Input columns:
        - text (`str`): the item as shown to the LLM.

    Output columns:
        - generation (`str | None`): the raw answer.
        - model_error (`str | None`): why the model call failed.
        - model_name (`str`): the model id.
        - llm_<name>_logprobs (`list`): per generated token, its top-k `{token, logprob}`.
    """

    prefix_messages: List[Dict[str, str]] = Field(default_factory=list)

    @property
    def inputs(self) -> List[str]:
        return ["text"]

    @property
    def outputs(self) -> List[str]:
        return ["generation", "model_error", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> "ChatType":
        return [*self.prefix_messages, {"role": "user", "content": input["text"]}]

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output, "model_error": None}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        """Generates answers; a model exception marks the batch's rows with `model_error` instead of losing them."""
        try:
            yield from super().process(inputs)
        except Exception as exc:  # noqa: BLE001 - every model failure becomes a failed row with its reason
            message = f"model error: {type(exc).__name__}: {exc}"[:500]
            self._logger.warning(f"{message}\n{traceback.format_exc(limit=3)}")
            try:
                name = self.llm.model_name
            except Exception:  # noqa: BLE001
                name = None
            yield [{**row, "generation": None, "model_error": message, "model_name": name,
                    f"llm_{self.name}_logprobs": None} for row in inputs]


class LabelProbabilities(Step):
    """Turns an answer + its logprobs into `label`, `probabilities` (JSON), `confidence`, `status`, `error`.

    Off-label answers, broken JSON, model errors and answers whose log-probabilities do not cover the label are
    `status='failed'` rows with the reason in `error`; nothing is guessed.

    Input columns:
        - generation (`str | None`), model_error (`str | None`), llm_<task>_logprobs (`list | None`).

    Output columns:
        - label (`str | None`), confidence (`float | None`), probabilities (`str | None`, a JSON object),
          status (`str`), error (`str | None`), raw_output (`str | None`), answer_fields (`str | None`, the
          parsed JSON object).
    """

    labels: List[str]
    key: str = "label"
    logprobs_column: str = f"llm_{TASK_NAME}_logprobs"
    lenient: bool = False

    @property
    def inputs(self) -> List[str]:
        return ["generation"]

    @property
    def outputs(self) -> List[str]:
        return ["label", "confidence", "probabilities", "status", "error", "raw_output", "answer_fields"]

    def score(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The label columns for one row (pure: used by `process` and in tests)."""
        generation = row.get("generation")
        result: Dict[str, Any] = {"label": None, "confidence": None, "probabilities": None, "status": "failed",
                                  "error": None, "raw_output": generation, "answer_fields": None}
        if row.get("model_error"):
            result["error"] = row["model_error"]
            return result
        try:
            answer, obj = parse_answer(generation, self.labels, key=self.key, lenient=self.lenient)
            result["answer_fields"] = json.dumps(obj, ensure_ascii=False)
            steps = row.get(self.logprobs_column)
            probabilities = label_probabilities(generation or "", steps, self.labels, answer, key=self.key)
        except AnswerError as exc:
            result["error"] = str(exc)
            return result
        result.update(label=answer, confidence=probabilities[answer], status="ok",
                      probabilities=json.dumps(probabilities))
        return result

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        yield [{**row, **self.score(row)} for row in inputs]


class WriteLabelCheckpoint(Step):
    """Appends every finished batch to `<directory>/<run_id>-<n>-<rows>.parquet` (atomic), so a killed run resumes.

    Input columns:
        - item_id, question, label, confidence, probabilities, model_name, status, error, raw_output.

    Output columns:
        - (none added; the batch passes through)
    """

    directory: str
    run_id: str
    prompt_hash: str
    extra_columns: List[str] = Field(default_factory=list)
    _count: int = PrivateAttr(default=0)

    @property
    def inputs(self) -> List[str]:
        return ["item_id", "question", "label", "confidence", "probabilities", "status", "error"]

    @property
    def outputs(self) -> List[str]:
        return []

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        rows = [{
            "item_id": str(row["item_id"]), "question": row["question"], "label": row.get("label"),
            "confidence": row.get("confidence"), "probabilities": row.get("probabilities"),
            "model": row.get("model_name"), "prompt_hash": self.prompt_hash, "raw_output": row.get("raw_output"),
            "status": row.get("status") or "failed", "error": row.get("error"), "run_id": self.run_id,
            "labeled_at": pd.Timestamp.now(tz="UTC").isoformat(),
            **{column: row.get(column) for column in self.extra_columns},
        } for row in inputs]
        if rows:
            self._count += 1
            write_part(Path(self.directory), self.run_id, self._count, rows)
        yield inputs


def write_part(directory: Path, run_id: str, batch: int, rows: List[Dict[str, Any]]) -> Path:
    """Write one finished batch atomically as `<run_id>-<batch>-<rows>.parquet` (the resume checkpoint)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{run_id}-{batch:05d}-{len(rows)}.parquet"
    temporary = directory / f".{final.name}.tmp"
    pd.DataFrame(rows).to_parquet(temporary, index=False)
    os.replace(temporary, final)
    return final


# --------------------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def offline_citations() -> Iterator[None]:
    """Make sure `Pipeline.run()` never looks citations up over the network.

    Distilabel 1.5.3 ends every run by building a Distiset whose citations it fetches (`requests.get`, no timeout)
    for steps whose docstrings reference arXiv papers; offline that can hang. Within this context the lookup fails
    at once, which Distilabel treats as "no citation".
    """
    import distilabel.distiset as distiset_module

    original = distiset_module.get_bibtex

    def _no_lookup(ref: str) -> str:
        raise ValueError("citation lookup disabled (offline)")

    distiset_module.get_bibtex = _no_lookup
    try:
        yield
    finally:
        distiset_module.get_bibtex = original


@contextlib.contextmanager
def _quiet_distilabel(verbose: bool) -> Iterator[None]:
    previous = os.environ.get("DISTILABEL_LOG_LEVEL")
    if not verbose:
        os.environ["DISTILABEL_LOG_LEVEL"] = "ERROR"
    try:
        yield
    finally:
        if not verbose:
            if previous is None:
                os.environ.pop("DISTILABEL_LOG_LEVEL", None)
            else:
                os.environ["DISTILABEL_LOG_LEVEL"] = previous


class _PartsWatcher:
    """Polls the checkpoint folder and reports (rows done, total) while the pipeline runs in the main thread."""

    def __init__(self, directory: Path, run_id: str, total: int, progress: Optional[Progress]) -> None:
        self.directory, self.run_id, self.total, self.progress = directory, run_id, total, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def done(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(int(p.stem.rsplit("-", 1)[1]) for p in self.directory.glob(f"{self.run_id}-*.parquet"))

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            if self.progress:
                self.progress(self.done(), self.total)

    def __enter__(self) -> "_PartsWatcher":
        if self.progress:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.progress:
            self._thread.join(timeout=2)
            self.progress(self.done(), self.total)


def run_label_pipeline(rows: List[Dict[str, Any]], spec: LabelSpec, llm: "LLM", generation_kwargs: Dict[str, Any],
                       *, parts_dir: Path, run_id: str, batch_size: int = 8, name: str = "curate-label",
                       cache_dir: Optional[Path] = None, extra_columns: Sequence[str] = (),
                       lenient: bool = False, progress: Optional[Progress] = None, verbose: bool = False) -> None:
    """Run the Distilabel label pipeline over `rows` (`item_id`, `question`, `text`, ...); results go to `parts_dir`.

    Args:
        rows: the inputs, one per (item, question).
        spec: the prompt (system, few-shot) and label set.
        llm: a Distilabel LLM (not loaded).
        generation_kwargs: passed to the LLM (see `pipelines.llms.generation_kwargs`).
        parts_dir: the checkpoint folder.
        run_id: tags this run's parts.
        batch_size: items per batch.
        name: the Distilabel pipeline name.
        cache_dir: Distilabel's working folder (default: a temporary folder, removed afterwards).
        extra_columns: input columns copied into the checkpoint rows.
        lenient: accept JSON cut short after a complete answer (judge rationales).
        progress: called with (rows done, total) while running.
        verbose: show Distilabel's own logs.
    """
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts

    llm.generation_kwargs = generation_kwargs  # type: ignore[attr-defined]
    parts_dir.mkdir(parents=True, exist_ok=True)
    work = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix=".distilabel-", dir=parts_dir.parent))
    try:
        with _quiet_distilabel(verbose), offline_citations():
            with Pipeline(name=name, cache_dir=work) as pipeline:
                load = LoadDataFromDicts(name="items", data=rows, batch_size=batch_size)
                classify = ClassifyWithLogprobs(name=TASK_NAME, llm=llm, prefix_messages=spec.prefix(),
                                                input_batch_size=batch_size, add_raw_input=False,
                                                add_raw_output=False)
                score = LabelProbabilities(name="probabilities", labels=spec.labels, key=spec.key,
                                           logprobs_column=f"llm_{TASK_NAME}_logprobs", lenient=lenient,
                                           input_batch_size=batch_size)
                sink = WriteLabelCheckpoint(name="checkpoint", directory=str(parts_dir), run_id=run_id,
                                            prompt_hash=spec.prompt_hash, extra_columns=list(extra_columns),
                                            input_batch_size=batch_size)
                load >> classify >> score >> sink
            with _PartsWatcher(parts_dir, run_id, len(rows), progress):
                pipeline.run(use_cache=False)
    finally:
        if cache_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def read_labels(path: os.PathLike[str] | str) -> pd.DataFrame:
    """Read a labels file (`labels.parquet` or a run directory) with `probabilities` decoded to dicts."""
    frame = read_run_file(path, LABELS_FILE, "curate label")
    frame["probabilities"] = [json.loads(p) if isinstance(p, str) and p else None for p in frame["probabilities"]]
    return frame


def _read_raw(path: Path) -> pd.DataFrame:
    frames = []
    if path.is_file():
        frames.append(pd.read_parquet(path))
    parts = path.parent / PARTS_DIR
    if parts.is_dir():
        frames.extend(pd.read_parquet(p) for p in sorted(parts.glob("*.parquet"), key=lambda p: p.stat().st_mtime))
    if not frames:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
        else pd.DataFrame(columns=LABEL_COLUMNS)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates(["item_id", "question"], keep="last").reset_index(drop=True)


def _consolidate(path: Path) -> pd.DataFrame:
    """Fold checkpoint parts into `labels.parquet` (atomically) and remove them."""
    frame = _read_raw(path)
    for column in LABEL_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[LABEL_COLUMNS]
    frame["confidence"] = frame["confidence"].astype("float64")
    temporary = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)
    shutil.rmtree(path.parent / PARTS_DIR, ignore_errors=True)
    return frame


@dataclass
class LabelRun:
    """What `label_items` did."""

    path: Path
    labels: pd.DataFrame
    labeled: int
    skipped: int
    seconds: float
    model: str
    prompt_hashes: Dict[str, str]

    @property
    def ok(self) -> int:
        return int((self.labels["status"] == "ok").sum())

    @property
    def failed(self) -> int:
        return int((self.labels["status"] != "ok").sum())

    @property
    def items_per_second(self) -> float:
        return self.labeled / self.seconds if self.seconds > 0 and self.labeled else 0.0

    def distribution(self) -> Dict[str, Dict[str, int]]:
        """Per question: count of each label among ok rows."""
        ok = self.labels[self.labels["status"] == "ok"]
        return {q: {str(k): int(v) for k, v in g["label"].value_counts().items()} for q, g in ok.groupby("question")}

    def errors(self) -> Dict[str, int]:
        """Failure reasons (their first words) and how often."""
        failed = self.labels[self.labels["status"] != "ok"]
        return {str(k): int(v) for k, v in failed["error"].fillna("unknown").str.split(":").str[0].value_counts()
                .items()}


def _questions(config: ProjectConfig) -> List[str]:
    llm = config.llm or LLMConfig()
    if llm.questions:
        return list(llm.questions)
    return [q.name for q in config.questions if q.kind in (QuestionKind.label, QuestionKind.rating)]


def label_items(
    config: ProjectConfig,
    *,
    limit: Optional[int] = None,
    progress: Optional[Progress] = None,
    llm: Optional["LLM"] = None,
    retry_failed: bool = False,
    verbose: bool = False,
) -> LabelRun:
    """Label the config's items with its LLM; write `<run dir>/labels.parquet`.

    Args:
        config: the project (`llm:` block; the local SmolLM2 model when absent).
        limit: label only the first `limit` items (after `data.where` / `data.limit`).
        progress: called with (rows done, rows to do) while labeling.
        llm: a Distilabel LLM to use instead of the configured one (tests, custom backends); its `model_name` is
            recorded as `model`.
        retry_failed: send rows that failed before to the model again.
        verbose: show Distilabel's own logs.

    Returns:
        A `LabelRun` whose `labels` are the rows of the requested items (all questions), fresh and resumed alike.

    Raises:
        ConfigError: a bad config (unknown question, missing few-shot labels).
        LLMSetupError: the model cannot be built (missing package / model file / API key).
    """
    from .llms import build_llm, generation_kwargs, model_id

    if config.task == TaskKind.preference:
        raise ConfigError(f"{config.source_path}: a `task: preference` project is built with `curate prefer`, "
                          f"not `curate label`. {_DOCS}")
    started = time.perf_counter()
    llm_config = config.llm or LLMConfig()
    items = load_items(config)
    if limit is not None:
        items = items.head(limit)
    path = config.run_path / LABELS_FILE
    model = llm.model_name if llm is not None else model_id(llm_config)  # type: ignore[union-attr]
    existing = _read_raw(path)
    wanted = set(items["item_id"])
    labeled = skipped = 0
    hashes: Dict[str, str] = {}
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for question in _questions(config):
        spec = build_label_spec(config, question, items)
        hashes[question] = spec.prompt_hash
        done = existing[(existing["question"] == question) & (existing["model"] == model)
                        & (existing["prompt_hash"] == spec.prompt_hash) & existing["item_id"].isin(wanted)]
        if retry_failed:
            done = done[done["status"] == "ok"]
        done_ids = set(done["item_id"])
        todo = items[~items["item_id"].isin(done_ids)]
        skipped += len(items) - len(todo)
        if todo.empty:
            continue
        rows = [{"item_id": row["item_id"], "question": question, "text": item_text(config, row)}
                for row in todo.to_dict(orient="records")]
        the_llm = llm if llm is not None else build_llm(llm_config)
        kwargs = generation_kwargs(llm_config, max_new_tokens=llm_config.max_new_tokens,
                                   temperature=llm_config.temperature, key=spec.key, labels=spec.labels)
        base = labeled

        def report(done_rows: int, total: int, _base: int = base) -> None:
            if progress:
                progress(_base + done_rows, len(items) * len(_questions(config)) - skipped)

        run_label_pipeline(rows, spec, the_llm, kwargs, parts_dir=path.parent / PARTS_DIR, run_id=run_id,
                           batch_size=llm_config.batch_size, name=f"curate-label-{config.name}",
                           progress=report if progress else None, verbose=verbose)
        labeled += len(rows)
    frame = _consolidate(path)
    mine = frame[frame["item_id"].isin(wanted) & frame["question"].isin(_questions(config))].reset_index(drop=True)
    return LabelRun(path=path, labels=mine, labeled=labeled, skipped=skipped,
                    seconds=time.perf_counter() - started, model=model, prompt_hashes=hashes)
