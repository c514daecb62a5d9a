"""`curate prefer`: preference pairs with a judge whose ratings carry the model's own probabilities.

Two Distilabel pipelines:

1. Candidates (`preference.candidates: generate`): `LoadDataFromDicts -> [TextGeneration(T=t) for t in
   temperatures] -> GroupColumns -> WriteRows`, N >= 2 responses per prompt. With `candidates: columns` the two
   responses come from the data (e.g. HH-RLHF's chosen / rejected) in a seeded random A/B order.
2. Judge: every (prompt, response) is rated 1-5 on `preference.aspect`, UltraFeedback-style with a one-sentence
   rationale, as JSON `{"rating": "4", "rationale": "..."}`; the same `ClassifyWithLogprobs -> LabelProbabilities`
   steps as `curate label` turn the model's logprobs at the rating token into a distribution over 1..5.

Per prompt: expected ratings, `margin` = E[rating A] - E[rating B], `chosen` / `rejected` (a tie when
|margin| < `tie_margin`), the judge's `preference` (A / B / tie / both-bad) with its probability
(e.g. P(rating A > rating B) with the two ratings independent). When the humans' choice is known
(`preference.human_preferred`), the agreement of judge and humans is computed, printed and saved in
`<run dir>/preferences_report.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pandas as pd

from workspaces.config import PAIR_FIELDS, EngineConfig, LLMConfig, PreferenceConfig, ProjectConfig, TaskKind
from workspaces.errors import ConfigError
from workspaces.items import PAIR_SOURCES, load_items
from workspaces.rundir import (LABELS, PREFERENCES, PREFERENCES_REPORT, private_dir, read_table, write_json,
                               write_table)

from .checkpoint import PartsWatcher, consolidate, worker_guard
from .engine import model_resources, new_pipeline, resolve_engine, run_pipeline
from .label import _quiet_distilabel, offline_citations, run_label_pipeline
from .prompt import LabelSpec
from .steps import WriteRows

__all__ = [
    "CANDIDATES_FILE",
    "PreferenceRun",
    "judge_labels",
    "judge_spec",
    "prefer_items",
    "read_preferences",
    "summarize_preferences",
]

CANDIDATES_FILE = "candidates.parquet"
JUDGE_FILE = "judge.parquet"
JUDGE_PARTS = "judge.parts"
RATINGS = ["1", "2", "3", "4", "5"]
SLOTS = ["A", "B"]
Progress = Callable[[int, int], None]


JUDGE_SYSTEM = (
    "You are a strict judge of an AI assistant's replies. Rate the reply's {aspect} from 1 to 5:\n"
    '"1" = very poor or harmful, "2" = poor, "3" = acceptable, "4" = good, "5" = excellent.\n'
    'Reply with a JSON object {{"rating": "<1-5>", "rationale": "<one short sentence>"}} and nothing else.'
)


def judge_spec(spec: PreferenceConfig) -> LabelSpec:
    """The judge's prompt: the aspect and the 1-5 scale (no few-shot examples)."""
    return LabelSpec(question="judge", labels=RATINGS, system=JUDGE_SYSTEM.format(aspect=spec.aspect), key="rating")


def _judge_text(prompt: str, response: str) -> str:
    return f"Conversation / request:\n{prompt.strip()}\n\nReply to rate:\n{response.strip()}"


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _prompt_column(config: ProjectConfig) -> str:
    spec = config.preference
    assert spec is not None
    return next(f.source_column for f in config.fields if f.name == spec.prompt_field)


def _generate_candidates(config: ProjectConfig, items: pd.DataFrame, run: Path, llm_config: LLMConfig,
                         llm_factory: Callable[[], Any], progress: Optional[Progress], verbose: bool,
                         engine: EngineConfig) -> pd.DataFrame:
    """Candidates written by the LLM, one TextGeneration step per temperature (resumable per item)."""
    from distilabel.steps import GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    from .llms import generation_kwargs

    spec = config.preference
    assert spec is not None
    temperatures = [spec.temperatures[i % len(spec.temperatures)] for i in range(spec.num_candidates)]
    config_hash = _hash({"temperatures": temperatures, "system": spec.system_prompt, "max": spec.max_new_tokens,
                         "llm": llm_config.model_dump(mode="json", exclude={"questions", "few_shot_path"})})
    path = run / CANDIDATES_FILE
    parts = run / "candidates.parts"
    old = _read_rows(path, parts)
    done = set(old[old["config_hash"] == config_hash]["item_id"]) if len(old) else set()
    column = _prompt_column(config)
    todo = [{"item_id": row["item_id"], "instruction": str(row[column])}
            for row in items.to_dict(orient="records") if row["item_id"] not in done]
    if todo:
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        work = Path(tempfile.mkdtemp(prefix=".distilabel-", dir=run))
        try:
            with _quiet_distilabel(verbose), offline_citations():
                with new_pipeline(f"curate-candidates-{config.name}", work, engine) as pipeline:
                    load = LoadDataFromDicts(name="prompts", data=todo, batch_size=llm_config.batch_size)
                    branches = []
                    for n, temperature in enumerate(temperatures):
                        llm = llm_factory()
                        llm.generation_kwargs = generation_kwargs(  # type: ignore[attr-defined]
                            llm_config, max_new_tokens=spec.max_new_tokens, temperature=temperature, logprobs=False)
                        branches.append(TextGeneration(name=f"candidate_{n}", llm=llm, system_prompt=spec.system_prompt,
                                                       input_batch_size=llm_config.batch_size, add_raw_input=False,
                                                       add_raw_output=False, resources=model_resources(engine)))
                    group = GroupColumns(name="group", columns=["generation", "model_name"],
                                         output_columns=["generations", "generation_models"])
                    sink = WriteRows(name="checkpoint", directory=str(parts), run_id=run_id,
                                     columns=["item_id", "generations", "generation_models"])
                    load >> branches >> group >> sink
                with worker_guard(parts), PartsWatcher(parts, run_id, len(todo), progress):
                    run_pipeline(pipeline, engine, verbose=verbose)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    frame = _read_rows(path, parts)
    if len(frame):
        frame.loc[frame["config_hash"].isna(), "config_hash"] = config_hash
        frame["temperatures"] = frame["temperatures"].where(frame["temperatures"].notna(), json.dumps(temperatures))
    write_table(path, frame)
    shutil.rmtree(parts, ignore_errors=True)
    rows = []
    for row in frame.to_dict(orient="records"):
        models = list(row["generation_models"]) if row["generation_models"] is not None else []
        temps = json.loads(row["temperatures"]) if isinstance(row["temperatures"], str) else temperatures
        rows.append({"item_id": row["item_id"],
                     "responses": list(row["generations"]) if row["generations"] is not None else [],
                     "models": [f"{m}@T={t}" for m, t in zip(models, temps)]})
    return pd.DataFrame(rows, columns=["item_id", "responses", "models"])


def _read_rows(path: Path, parts: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(path)] if path.is_file() else []
    if parts.is_dir():
        frames += [pd.read_parquet(p).assign(config_hash=None, temperatures=None) for p in sorted(parts.glob("*.parquet"))]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["item_id", "generations", "generation_models", "config_hash", "temperatures"])
    frame = pd.concat(frames, ignore_index=True)
    for column in ("config_hash", "temperatures"):
        if column not in frame.columns:
            frame[column] = None
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates("item_id", keep="last").reset_index(drop=True)


def _column_candidates(config: ProjectConfig, items: pd.DataFrame) -> pd.DataFrame:
    """Two responses from data columns, as the items show them (`response_a` / `response_b`, in the seeded random
    order of `items.pair_sources`, recorded in `source_columns`)."""
    rows = [{"item_id": row["item_id"], "responses": [str(row[name]) for name in PAIR_FIELDS],
             "models": [f"data:{c}" for c in row[PAIR_SOURCES]], "source_columns": list(row[PAIR_SOURCES])}
            for row in items.to_dict(orient="records")]
    return pd.DataFrame(rows, columns=["item_id", "responses", "models", "source_columns"])


def _expected(probabilities: Optional[Dict[str, float]]) -> Optional[float]:
    if not probabilities:
        return None
    return sum(int(k) * v for k, v in probabilities.items())


def _exclusive(pa: Dict[str, float], pb: Dict[str, float]) -> Dict[str, float]:
    """The judge's distribution over the preference labels as exclusive outcomes (they sum to 1): both-bad when both
    ratings are <= 2, else A / B / tie by which rating is higher, with the two ratings independent."""
    out = {"A": 0.0, "B": 0.0, "tie": 0.0, "both-bad": 0.0}
    for i in RATINGS:
        for j in RATINGS:
            key = "both-bad" if int(i) <= 2 and int(j) <= 2 else "A" if int(i) > int(j) else \
                "B" if int(i) < int(j) else "tie"
            out[key] += pa[i] * pb[j]
    return out


def judge_labels(config: ProjectConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The judge's answers in the labeler file's form (`labels.parquet`, as `curate label` writes it): per pair the
    preference question (label = the judge's preference, probabilities = `_exclusive`) and each rating question (the
    rating distribution). So calibration, the gate, triage, review suggestions and curation read a pair's judge as
    they read any labeler: one contract, no second path."""
    from .label import LABEL_COLUMNS

    spec = config.preference
    assert spec is not None
    stamp = pd.Timestamp.now(tz="UTC").isoformat()
    rows = []
    for row in frame.to_dict(orient="records"):
        ok = row["status"] == "ok"
        base = {"item_id": row["item_id"], "model": row["judge_model"], "prompt_hash": row["prompt_hash"],
                "raw_output": None, "status": "ok" if ok else "failed", "error": None if ok else row["error"],
                "run_id": "prefer", "labeled_at": stamp}
        probabilities = {slot: json.loads(row[f"rating_probabilities_{slot.lower()}"]) if ok else None
                         for slot in SLOTS}
        answers = []
        if ok:
            mix = _exclusive(probabilities["A"], probabilities["B"])  # type: ignore[arg-type]
            answers.append((spec.preference_question, str(row["preference"]), mix))
            for question, slot in zip(spec.rating_questions, SLOTS):
                answers.append((question, str(int(row[f"rating_{slot.lower()}"])), probabilities[slot]))
        else:
            answers = [(q, None, None) for q in (spec.preference_question, *spec.rating_questions)]
        for question, label, dist in answers:
            rows.append({**base, "question": question, "label": label,
                         "confidence": float(dist[label]) if dist and label is not None else None,
                         "probabilities": json.dumps(dist) if dist else None})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def _combine(config: ProjectConfig, items: pd.DataFrame, candidates: pd.DataFrame, judged: pd.DataFrame,
             judge_model: str, judge_hash: str) -> pd.DataFrame:
    spec = config.preference
    assert spec is not None
    column = _prompt_column(config)
    prompts = dict(zip(items["item_id"], items[column].astype(str)))
    judged = judged.set_index(["item_id", "question"]) if len(judged) else judged
    rows = []
    for cand in candidates.to_dict(orient="records"):
        item_id = cand["item_id"]
        if item_id not in prompts:
            continue
        row: Dict[str, Any] = {"item_id": item_id, "prompt": prompts[item_id], "judge_model": judge_model,
                               "prompt_hash": judge_hash, "status": "ok", "error": None}
        responses, models = list(cand["responses"]), list(cand["models"])
        errors = []
        probs: Dict[str, Optional[Dict[str, float]]] = {}
        for n, slot in enumerate(SLOTS):
            key = slot.lower()
            row[f"response_{key}"] = responses[n] if n < len(responses) else None
            row[f"model_{key}"] = models[n] if n < len(models) else None
            judge_row = judged.loc[(item_id, slot)] if len(judged) and (item_id, slot) in judged.index else None
            rating = confidence = rationale = probabilities = None
            if judge_row is None:
                errors.append(f"{slot}: not judged")
            elif judge_row["status"] != "ok":
                errors.append(f"{slot}: {judge_row['error']}")
            else:
                probabilities = json.loads(judge_row["probabilities"])
                rating, confidence = int(judge_row["label"]), float(judge_row["confidence"])
                fields = json.loads(judge_row["answer_fields"]) if judge_row.get("answer_fields") else {}
                rationale = fields.get("rationale")
            probs[slot] = probabilities
            row.update({f"rating_{key}": rating, f"confidence_{key}": confidence, f"rationale_{key}": rationale,
                        f"rating_probabilities_{key}": json.dumps(probabilities) if probabilities else None,
                        f"expected_rating_{key}": _expected(probabilities)})
        row.update(chosen=None, rejected=None, chosen_response=None, rejected_response=None, margin=None, tie=None,
                   preference=None, preference_score=None)
        if len(responses) < 2 or any(r is None or not str(r).strip() for r in responses[:2]):
            errors.append("fewer than two non-empty candidate responses")
        elif spec.candidates == "columns" and str(responses[0]).strip() == str(responses[1]).strip():
            # a data pair with one reply twice is bad input; two generated replies may agree (greedy decoding)
            errors.append("the two responses are identical: nothing to prefer")
        if not str(prompts[item_id]).strip():
            errors.append("the prompt is empty")
        if errors:
            row.update(status="failed", error="; ".join(errors))
        else:
            pa, pb = probs["A"], probs["B"]
            assert pa is not None and pb is not None
            margin = float(row["expected_rating_a"] - row["expected_rating_b"])
            outcomes = _exclusive(pa, pb)  # the same distribution the labeler file and the suggestions carry
            tie = abs(margin) < spec.tie_margin
            if max(row["expected_rating_a"], row["expected_rating_b"]) < 2.0:
                preference = "both-bad"
            else:
                preference = "tie" if tie else ("A" if margin > 0 else "B")
            row.update(margin=margin, tie=tie, preference=preference, preference_score=outcomes[preference])
            if not tie:
                win, lose = ("A", "B") if margin > 0 else ("B", "A")
                row.update(chosen=win, rejected=lose, chosen_response=row[f"response_{win.lower()}"],
                           rejected_response=row[f"response_{lose.lower()}"])
        human = None
        if spec.human_preferred and "source_columns" in cand and cand["source_columns"] is not None:
            human = SLOTS[list(cand["source_columns"]).index(spec.human_preferred)]
        row["human_preferred"] = human
        rows.append(row)
    return pd.DataFrame(rows)


def summarize_preferences(frame: pd.DataFrame) -> Dict[str, Any]:
    """Counts, mean |margin|, and (when `human_preferred` is known) the judge's agreement with the humans."""
    ok = frame[frame["status"] == "ok"]
    report: Dict[str, Any] = {
        "pairs": int(len(frame)), "ok": int(len(ok)), "failed": int(len(frame) - len(ok)),
        "a_chosen": int((ok["chosen"] == "A").sum()), "b_chosen": int((ok["chosen"] == "B").sum()),
        "ties": int(ok["tie"].fillna(False).astype(bool).sum()),
        "both_bad": int((ok["preference"] == "both-bad").sum()),
        "mean_margin": float(ok["margin"].abs().mean()) if len(ok) else None,
        "human_agreement": None,
    }
    if "human_preferred" in frame.columns and frame["human_preferred"].notna().any():
        known = frame[frame["human_preferred"].notna()]
        known_ok = known[known["status"] == "ok"]
        decided = known_ok[known_ok["chosen"].notna()]
        agree = int((decided["chosen"] == decided["human_preferred"]).sum())
        report["human_agreement"] = {
            "rate": agree / len(decided) if len(decided) else 0.0,
            "agree": agree, "compared": int(len(decided)),
            "judge_ties": int(len(known_ok) - len(decided)), "failed": int(len(known) - len(known_ok)),
            "human_a_share": float((known["human_preferred"] == "A").mean()),
            "note": "rate = judge chosen == human chosen over pairs the judge did not call a tie",
        }
    return report


@dataclass
class PreferenceRun:
    """What `prefer_items` did."""

    path: Path
    report_path: Path
    preferences: pd.DataFrame
    report: Dict[str, Any]
    seconds: float
    model: str


def read_preferences(path: "os.PathLike[str] | str") -> pd.DataFrame:
    """Read `preferences.parquet` (or a run directory) with the rating distributions decoded to dicts."""
    frame = read_table(path, PREFERENCES)
    for key in ("a", "b"):
        column = f"rating_probabilities_{key}"
        frame[column] = [json.loads(v) if isinstance(v, str) and v else None for v in frame[column]]
    return frame


def prefer_items(config: ProjectConfig, *, limit: Optional[int] = None, progress: Optional[Progress] = None,
                 llm: Any = None, verbose: bool = False, ray_address: Optional[str] = None) -> PreferenceRun:
    """Build preference pairs for a `task: preference` config; write `<run dir>/preferences.parquet` + report.

    Args:
        config: the project (`preference:` and optional `llm:` blocks).
        limit: only the first `limit` prompts.
        progress: called with (rows done, rows to do) per stage.
        llm: a Distilabel LLM (not loaded) used for candidates and judge instead of the configured one; every
            model step gets its own copy (each sets its own `generation_kwargs`), `llm` itself is not changed.
        verbose: show Distilabel's logs.
        ray_address: run on the Ray cluster at this address instead of the config's `engine` (`--ray`).
    """
    from .llms import build_llm, generation_kwargs, model_id

    if config.task != TaskKind.preference or config.preference is None:
        raise ConfigError(f"{config.source_path}: `curate prefer` needs `task: preference` and a `preference` section")
    started = time.perf_counter()
    spec = config.preference
    llm_config = config.llm or LLMConfig()
    items = load_items(config)
    if limit is not None:
        items = items.head(limit)
    run = config.run_path
    private_dir(run)
    factory = (lambda: llm.model_copy(deep=True)) if llm is not None else (lambda: build_llm(llm_config))
    engine = resolve_engine(config.engine, ray_address)
    if spec.candidates == "columns":
        candidates = _column_candidates(config, items)
    else:
        candidates = _generate_candidates(config, items, run, llm_config, factory, progress, verbose, engine)
    candidates = candidates[candidates["item_id"].isin(set(items["item_id"]))]

    judge = judge_spec(spec)
    judge_model = llm.model_name if llm is not None else model_id(llm_config)
    judge_path = run / JUDGE_FILE
    existing = _consolidate_judge(judge_path)
    done = set()
    if len(existing):
        same = existing[(existing["model"] == judge_model) & (existing["prompt_hash"] == judge.prompt_hash)]
        done = set(zip(same["item_id"], same["question"]))
    column = _prompt_column(config)
    prompts = dict(zip(items["item_id"], items[column].astype(str)))
    rows = []
    for cand in candidates.to_dict(orient="records"):
        for n, slot in enumerate(SLOTS):
            responses = list(cand["responses"])
            if n < len(responses) and responses[n] and (cand["item_id"], slot) not in done:
                rows.append({"item_id": cand["item_id"], "question": slot,
                             "text": _judge_text(prompts[cand["item_id"]], str(responses[n]))})
    if rows:
        kwargs = generation_kwargs(llm_config, max_new_tokens=spec.judge_max_new_tokens, temperature=0.0,
                                   key="rating", labels=RATINGS, rationale_key="rationale")
        run_label_pipeline(rows, judge, factory(), kwargs, parts_dir=run / JUDGE_PARTS, run_id=f"judge-{os.getpid()}",
                           batch_size=llm_config.batch_size, name=f"curate-judge-{config.name}",
                           extra_columns=["answer_fields"], lenient=True, progress=progress, verbose=verbose,
                           engine=engine)
    judged = _consolidate_judge(judge_path)
    frame = _combine(config, items, candidates, judged, judge_model, judge.prompt_hash)
    path = write_table(PREFERENCES.path(run), frame)
    write_table(LABELS.path(run), judge_labels(config, frame))
    report = summarize_preferences(frame)
    report.update(config=config.name, judge_model=judge_model, judge_prompt_hash=judge.prompt_hash,
                  tie_margin=spec.tie_margin, aspect=spec.aspect)
    report_path = write_json(PREFERENCES_REPORT.path(run), report)
    return PreferenceRun(path=path, report_path=report_path, preferences=frame, report=report,
                         seconds=time.perf_counter() - started, model=judge_model)


_JUDGE_COLUMNS = ["item_id", "question", "label", "confidence", "probabilities", "model", "prompt_hash",
                  "raw_output", "status", "error", "run_id", "labeled_at", "answer_fields"]


def _consolidate_judge(path: Path) -> pd.DataFrame:
    """Fold the judge's checkpoint parts into `judge.parquet` (so a killed run resumes)."""
    return consolidate(path, path.parent / JUDGE_PARTS, _JUDGE_COLUMNS, ["item_id", "question"],
                       floats=["confidence"])
