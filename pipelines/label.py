"""`curate label`: a Distilabel pipeline that labels a project's items with the configured LLM.

Pipeline (one run per question the LLM answers)::

    LoadDataFromDicts(item_id, question, text)
      -> ClassifyWithLogprobs   (Task: guideline + label descriptions + k few-shot examples -> JSON answer + logprobs)
      -> LabelProbabilities     (Step: parse the answer, probabilities over the allowed labels, status / error)
      -> WriteLabelCheckpoint   (Step: appends each finished batch to <run dir>/labels.parts/)

A multi_label question is asked as one yes/no prompt per label (`emotions::joy`, `pipelines.prompt.build_label_specs`);
those rows stay in the file, and one row per item under the question's own name folds them: p("yes") per label in
`probabilities`, the label set and its confidence from `MultiLabelShape.decide`.

Output: `<run dir>/labels.parquet`, one row per (item_id, question) with `label`, `confidence`, `probabilities`
(a JSON object string; `read_labels` decodes it), `model`, `prompt_hash`, `raw_output`, `status`, `error`, `run_id`,
`labeled_at`. A killed run resumes from its checkpoint parts; rows already labeled with the same model and prompt hash
are never sent to the model again.

Consent (`data.consent_column`): a remote LLM (`pipelines.llms.is_remote`) is never sent an item without consent; it
gets a failed row `not sent: no consent: ...` (counted in `LabelRun.no_consent`, and looked at again on every run, so
consent given later is acted on), and a few-shot example without consent stops the run. An in-process LLM (local,
llama-cpp, transformers) labels every item: nothing leaves the machine.
"""


from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import pandas as pd

from workspaces.config import EngineConfig, LLMConfig, ProjectConfig, TaskKind
from workspaces.errors import ConfigError
from workspaces.items import NO_CONSENT, check_consent, check_items, load_items
from workspaces.rundir import LABELS, PROMPT_EXAMPLES, private_dir, read_json, read_table, write_json, write_table
from workspaces.shapes import shape_of

from .checkpoint import PartsWatcher, consolidate, read_with_parts, worker_guard, write_part
from .engine import model_resources, new_pipeline, resolve_engine, run_pipeline
from .prompt import LABEL_SEPARATOR, LabelSpec, build_label_specs, item_text
from .steps import TASK_NAME, ClassifyWithLogprobs, LabelProbabilities, WriteLabelCheckpoint

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM

__all__ = [
    "LABEL_COLUMNS",
    "LabelRun",
    "label_items",
    "offline_citations",
    "read_labels",
    "run_label_pipeline",
]

PARTS_DIR = "labels.parts"
LABEL_COLUMNS = ["item_id", "question", "label", "confidence", "probabilities", "model", "prompt_hash", "raw_output",
                 "status", "error", "run_id", "labeled_at"]
_KEY = ["item_id", "question"]
_NO_CONSENT_ERROR = f"not sent: {NO_CONSENT}"
_DOCS = "See pipelines/README.md."

Progress = Callable[[int, int], None]


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


def run_label_pipeline(rows: List[Dict[str, Any]], spec: LabelSpec, llm: "LLM", generation_kwargs: Dict[str, Any],
                       *, parts_dir: Path, run_id: str, batch_size: int = 8, name: str = "curate-label",
                       cache_dir: Optional[Path] = None, extra_columns: Sequence[str] = (),
                       lenient: bool = False, progress: Optional[Progress] = None, verbose: bool = False,
                       engine: Optional[EngineConfig] = None) -> None:
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
        engine: where it runs (`pipelines.engine`; default: this machine).
    """
    from distilabel.steps import LoadDataFromDicts

    llm.generation_kwargs = generation_kwargs  # type: ignore[attr-defined]
    private_dir(parts_dir)
    work = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix=".distilabel-", dir=parts_dir.parent))
    try:
        with _quiet_distilabel(verbose), offline_citations():
            with new_pipeline(name, work, engine) as pipeline:
                load = LoadDataFromDicts(name="items", data=rows, batch_size=batch_size)
                classify = ClassifyWithLogprobs(name=TASK_NAME, llm=llm, prefix_messages=spec.prefix(),
                                                input_batch_size=batch_size, add_raw_input=False,
                                                add_raw_output=False, resources=model_resources(engine))
                score = LabelProbabilities(name="probabilities", labels=spec.labels, key=spec.key,
                                           logprobs_column=f"llm_{TASK_NAME}_logprobs", lenient=lenient,
                                           input_batch_size=batch_size)
                sink = WriteLabelCheckpoint(name="checkpoint", directory=str(parts_dir), run_id=run_id,
                                            prompt_hash=spec.prompt_hash, extra_columns=list(extra_columns),
                                            input_batch_size=batch_size)
                load >> classify >> score >> sink
            with worker_guard(parts_dir), PartsWatcher(parts_dir, run_id, len(rows), progress):
                run_pipeline(pipeline, engine, verbose=verbose)
    finally:
        if cache_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def read_labels(path: "os.PathLike[str] | str") -> pd.DataFrame:
    """Read a labels file (`labels.parquet` or a run directory) with `probabilities` decoded to dicts."""
    frame = read_table(path, LABELS)
    frame["probabilities"] = [json.loads(p) if isinstance(p, str) and p else None for p in frame["probabilities"]]
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
    def no_consent(self) -> int:
        """Items never sent to the (remote) LLM for lack of consent."""
        refused = self.labels["error"].fillna("").astype(str).str.startswith(_NO_CONSENT_ERROR)
        return int(self.labels.loc[refused, "item_id"].nunique())

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
    return [q.name for q in config.questions if shape_of(q).llm_answers]


def _fold_label_sets(config: ProjectConfig, frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One row per item for each multi_label question, folded from its yes/no rows (`name::label`).

    The label's probability is the model's p("yes") (its token probabilities; without them, 1 or 0 from the answer);
    the row's label and confidence are the shape's decision (`MultiLabelShape.decide`). An item is a failed row
    when any of its labels failed or is missing, naming them. The yes/no rows stay in the file as provenance.
    """
    out = [frame]
    for name in _questions(config):
        question = config.question(name)
        shape = shape_of(question)
        if shape.single_choice:
            continue
        prefix = f"{name}{LABEL_SEPARATOR}"
        parts = frame[frame["question"].astype(str).str.startswith(prefix)]
        out[0] = out[0][out[0]["question"] != name]  # folded again from the yes/no rows each run
        labels = list(question.labels or {})
        rows = []
        for item_id, group in parts.groupby("item_id", sort=True):
            group = group.assign(label_name=group["question"].str[len(prefix):])
            group = group[group["label_name"].isin(labels)].drop_duplicates("label_name", keep="last")
            by_label = group.set_index("label_name")
            missing = [label for label in labels if label not in by_label.index]
            failed = [label for label in labels if label in by_label.index and by_label.at[label, "status"] != "ok"]
            row = {"item_id": item_id, "question": name, "label": None, "confidence": None, "probabilities": None,
                   "model": str(group["model"].iloc[-1]), "raw_output": None, "status": "failed", "error": None,
                   "run_id": run_id, "labeled_at": pd.Timestamp.now(tz="UTC").isoformat(),
                   "prompt_hash": hashlib.sha256(json.dumps(sorted(set(group["prompt_hash"].astype(str))))
                                                 .encode()).hexdigest()[:16]}
            if missing or failed:
                row["error"] = "labels not answered: " + ", ".join(failed + missing)
            else:
                p_yes = {}
                for label in labels:
                    answer = by_label.loc[label]
                    probabilities = json.loads(answer["probabilities"]) if isinstance(answer["probabilities"], str) \
                        and answer["probabilities"] else None
                    p_yes[label] = float(probabilities.get("yes", 0.0)) if probabilities else \
                        float(str(answer["label"]) == "yes")
                value, confidence = shape.decide(p_yes)
                row.update(label=shape.dump(value), confidence=confidence, probabilities=json.dumps(p_yes),
                           status="ok")
            rows.append(row)
        if rows:
            out.append(pd.DataFrame(rows, columns=LABEL_COLUMNS))
    return pd.concat(out, ignore_index=True)[LABEL_COLUMNS] if len(out) > 1 else frame


def _refuse_examples_without_consent(config: ProjectConfig, llm: "LLM | LLMConfig", specs: List[LabelSpec]) -> None:
    """A remote LLM sees the few-shot examples in every prompt: stop (`ConsentRefusedError`) when one of them, an
    item of `llm.few_shot_path`, has no consent (`data.consent_column` is read in that file too)."""
    from .llms import refuse_without_consent

    llm_config = config.llm or LLMConfig()
    example_ids = {item_id for spec in specs for item_id in spec.example_ids}
    if config.data.consent_column is None or llm_config.few_shot_path is None or not example_ids:
        return
    pool_config = config.model_copy(update={"data": config.data.model_copy(
        update={"path": llm_config.few_shot_path, "where": {}, "limit": None})})
    pool = load_items(pool_config)
    refuse_without_consent(pool_config, llm, pool[pool["item_id"].isin(example_ids)],
                           what=f"few-shot example(s) of llm.few_shot_path {llm_config.few_shot_path}")


def label_items(
    config: ProjectConfig,
    *,
    limit: Optional[int] = None,
    item_ids: Optional[Iterable[str]] = None,
    progress: Optional[Progress] = None,
    llm: Optional["LLM"] = None,
    retry_failed: bool = False,
    verbose: bool = False,
    ray_address: Optional[str] = None,
) -> LabelRun:
    """Label the config's items with its LLM; write `<run dir>/labels.parquet`.

    Args:
        config: the project (`llm:` block; the local SmolLM2 model when absent).
        limit: label only the first `limit` items (after `data.where` / `data.limit`).
        item_ids: label only these items (e.g. the ones humans reviewed, to calibrate the LLM on them).
        progress: called with (rows done, rows to do) while labeling.
        llm: a Distilabel LLM to use instead of the configured one (tests, custom backends); its `model_name` is
            recorded as `model`.
        retry_failed: send rows that failed before to the model again.
        verbose: show Distilabel's own logs.
        ray_address: run on the Ray cluster at this address instead of the config's `engine` (`--ray`).

    Returns:
        A `LabelRun` whose `labels` are the rows of the requested items (all questions), fresh and resumed alike.

    Raises:
        ConfigError: a bad config (unknown question, missing few-shot labels, a consent column the data lacks).
        LLMSetupError: the model cannot be built (missing package / model file / API key).
        ConsentRefusedError: a remote LLM would see a few-shot example without consent.

    A remote LLM is never sent an item without consent (`data.consent_column`): the item gets a failed row
    `not sent: no consent: ...` instead. An in-process LLM labels every item: nothing leaves the machine.
    """
    from .llms import build_llm, generation_kwargs, is_remote, model_id, refuse_without_consent

    if config.task == TaskKind.preference:
        raise ConfigError(f"{config.source_path}: a `task: preference` project is built with `curate prefer`, "
                          f"not `curate label`. {_DOCS}")
    started = time.perf_counter()
    llm_config = config.llm or LLMConfig()
    items = load_items(config)
    if limit is not None:
        items = items.head(limit)
    if item_ids is not None:
        items = items[items["item_id"].isin(set(item_ids))]
    path = LABELS.path(config.run_path)
    model = llm.model_name if llm is not None else model_id(llm_config)  # type: ignore[union-attr]
    existing = read_with_parts(path, path.parent / PARTS_DIR, LABEL_COLUMNS, _KEY)
    wanted = set(items["item_id"])
    labeled = skipped = 0
    hashes: Dict[str, str] = {}
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    examples = read_json(config.run_path, PROMPT_EXAMPLES, required=False) or {}
    specs = [spec for question in _questions(config) for spec in build_label_specs(config, question, items)]
    remote = is_remote(llm if llm is not None else llm_config)
    if remote:
        _refuse_examples_without_consent(config, llm if llm is not None else llm_config, specs)
    for number, spec in enumerate(specs):
        question = spec.question
        hashes[question] = spec.prompt_hash
        examples.setdefault(question, {})[spec.prompt_hash] = {
            "few_shot_path": str(llm_config.few_shot_path) if llm_config.few_shot_path else None,
            "item_ids": spec.example_ids}
        done = existing[(existing["question"] == question) & (existing["model"] == model)
                        & (existing["prompt_hash"] == spec.prompt_hash) & existing["item_id"].isin(wanted)]
        if retry_failed:
            done = done[done["status"] == "ok"]
        # consent is read afresh on every run: an item refused for lack of it is not done
        done = done[~done["error"].fillna("").astype(str).str.startswith(_NO_CONSENT_ERROR)]
        done_ids = set(done["item_id"])
        todo = items[~items["item_id"].isin(done_ids)]
        skipped += len(items) - len(todo)
        if todo.empty:
            continue
        problems: Dict[str, str] = {}
        if remote:  # an item without consent never leaves the machine
            consent = check_consent(config, todo)
            problems.update(consent.problems)
            todo = consent.valid
        checked = check_items(config, todo, fields=list(llm_config.fields) or None)
        problems.update(checked.problems)
        if problems:  # never sent: a failed row with its reason each, counted like any failure
            write_part(path.parent / PARTS_DIR, f"{run_id}-{question}-invalid", 1, [
                {"item_id": item_id, "question": question, "label": None, "confidence": None,
                 "probabilities": None, "model": model, "prompt_hash": spec.prompt_hash, "raw_output": None,
                 "status": "failed", "error": f"not sent: {reason}", "run_id": run_id,
                 "labeled_at": pd.Timestamp.now(tz="UTC").isoformat()}
                for item_id, reason in problems.items()])
            labeled += len(problems)
        todo = checked.valid
        if todo.empty:
            continue
        rows = [{"item_id": row["item_id"], "question": question, "text": item_text(config, row)}
                for row in todo.to_dict(orient="records")]
        the_llm = llm if llm is not None else build_llm(llm_config)
        refuse_without_consent(config, the_llm, todo)  # the second line of defence: raises before any request
        kwargs = generation_kwargs(llm_config, max_new_tokens=llm_config.max_new_tokens,
                                   temperature=llm_config.temperature, key=spec.key, labels=spec.labels)
        base = labeled

        def report(done_rows: int, total: int, _base: int = base) -> None:
            if progress:
                progress(_base + done_rows, len(items) * len(specs) - skipped)

        # one tag per prompt: each pipeline run numbers its batches from 0, so a shared tag would overwrite parts
        run_label_pipeline(rows, spec, the_llm, kwargs, parts_dir=path.parent / PARTS_DIR,
                           run_id=f"{run_id}-{number:03d}",
                           batch_size=llm_config.batch_size, name=f"curate-label-{config.name}",
                           progress=report if progress else None, verbose=verbose,
                           engine=resolve_engine(config.engine, ray_address))
        labeled += len(rows)
    write_json(PROMPT_EXAMPLES.path(config.run_path), examples)
    frame = consolidate(path, path.parent / PARTS_DIR, LABEL_COLUMNS, _KEY, floats=["confidence"])
    if any(not shape_of(config.question(q)).single_choice for q in _questions(config)):
        frame = _fold_label_sets(config, frame, run_id)
        frame["confidence"] = frame["confidence"].astype("float64")
        write_table(path, frame)
    mine = frame[frame["item_id"].isin(wanted) & frame["question"].isin(_questions(config))].reset_index(drop=True)
    return LabelRun(path=path, labels=mine, labeled=labeled, skipped=skipped,
                    seconds=time.perf_counter() - started, model=model, prompt_hashes=hashes)
