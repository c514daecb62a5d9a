"""The agreement report: a typed model written to `<run dir>/report.json` and read back by the CLI, the dataset card
and the notebooks.

It holds Krippendorff's alpha per question, per-annotator agreement with the others' human label, and the labeler
against the human label (the same rule, `workspaces.votes.human_label`, that the curated dataset publishes). Later
stages add their sections (audit, honeypots, anchoring, consensus, redaction) as optional fields.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError
from sklearn.metrics import accuracy_score, cohen_kappa_score

from ..config import AlphaLevel, ProjectConfig, QuestionConfig, QuestionKind
from ..errors import RunFileError
from ..items import field_texts
from ..redaction import read_redaction_counts
from ..shapes import shape_of
from ..rundir import ANNOTATIONS, LABELS, REPORT, REPORT_MD, read_json, read_table, write_json, write_text
from ..votes import vote_table
from .alpha import (AlphaResult, AnnotatorAgreement, annotator_agreement, bio_alpha, krippendorff_alpha,
                    masi_alpha)
from .render import MarkdownTable
from .render import fmt as _fmt
from .sections import SECTION_BUILDERS, SECTION_RENDERERS
from .tables import human_table

__all__ = [
    "AlphaBlock",
    "JUDGE",
    "JudgeBlock",
    "MarkdownTable",
    "RedactionBlock",
    "Report",
    "build_report",
    "read_report",
    "write_report",
]

JUDGE = "llm-judge"


class AlphaBlock(AlphaResult):
    """Alpha for one question at its level, plus interval alpha for rating questions (for comparison)."""

    alpha_interval: Optional[float] = None
    per_label: dict[str, AlphaResult] = Field(default_factory=dict,
                                              description="multi_label: nominal alpha of each label's yes/no")
    invalid: int = Field(0, description="submitted values that break the question (unknown label, min/max picks), "
                                        "left out of alpha and counted here")


class JudgeBlock(BaseModel):
    """The LLM labeler against the humans' label (`votes.human_label`) on one question."""

    labelled: int
    ok: int
    failed: int
    n: int = Field(description="items with both an ok LLM label and a human label")
    accuracy: Optional[float] = None
    cohen_kappa: Optional[float] = None
    alpha_with_judge: Optional[float] = None
    models: list[str] = Field(default_factory=list)


class RedactedKind(BaseModel):
    """One kind of redacted value: distinct values (tokens) and occurrences."""

    values: int
    occurrences: int


class RedactionBlock(BaseModel):
    """What PII redaction replaced in the project's items before they reached reviewers or an LLM (counts only)."""

    items: int = Field(description="items loaded")
    items_redacted: int = Field(description="items with at least one redacted value")
    by_kind: dict[str, RedactedKind] = Field(default_factory=dict)


class Report(BaseModel):
    """What `curate report` computed for a run (see the module docstring)."""

    project: str
    dataset: str
    guideline_hash: str
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    responses: dict[str, int] = Field(default_factory=dict, description="responses (record x user) by status")
    questions: dict[str, AlphaBlock] = Field(default_factory=dict)
    annotators: dict[str, list[AnnotatorAgreement]] = Field(default_factory=dict)
    judge: dict[str, JudgeBlock] = Field(default_factory=dict)
    redaction: Optional[RedactionBlock] = Field(default=None, description="PII redaction counts (None: not recorded)")
    sections: dict[str, Any] = Field(default_factory=dict,
                                     description="sections added by later stages (audit, honeypots, anchoring, "
                                                 "consensus, redaction), each a JSON object")

    # ---- one renderer for each table ----
    def alpha_table(self) -> MarkdownTable:
        rows = []
        for name, q in self.questions.items():
            ci = "n/a" if q.ci95 is None else f"[{q.ci95[0]:.3f}, {q.ci95[1]:.3f}]"
            rows.append([name, q.distance or q.level.value, _fmt(q.alpha), ci, _fmt(q.alpha_interval), str(q.units),
                         str(q.annotators), str(q.pairable)])
        return MarkdownTable(title="Krippendorff's alpha (submitted responses)",
                             columns=["question", "level", "alpha", "95% CI", "interval alpha", "units",
                                      "annotators", "pairable values"], rows=rows)

    def per_label_tables(self) -> list[MarkdownTable]:
        """Multi-label questions: each label's nominal alpha (does a response hold it), and the invalid count."""
        tables = []
        for name, q in self.questions.items():
            if not q.per_label:
                continue
            rows = [[label, _fmt(r.alpha), "n/a" if r.ci95 is None else f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]",
                     str(r.units)] for label, r in q.per_label.items()]
            tables.append(MarkdownTable(title=f"{name}: alpha per label ({q.invalid} response(s) that break the "
                                              f"question left out)",
                                        columns=["label", "alpha", "95% CI", "units"], rows=rows))
        return tables

    def annotator_tables(self) -> list[MarkdownTable]:
        return [MarkdownTable(title=f"{name}: agreement with the other annotators' label",
                              columns=["annotator", "units", "compared", "agreement"],
                              rows=[[a.annotator, str(a.units), str(a.compared), _fmt(a.agreement)]
                                    for a in annotators])
                for name, annotators in self.annotators.items()]

    def judge_table(self) -> Optional[MarkdownTable]:
        if not self.judge:
            return None
        return MarkdownTable(title="LLM labeler against the human label",
                             columns=["question", "labelled", "failed", "compared", "accuracy", "Cohen's kappa",
                                      "alpha with judge"],
                             rows=[[name, str(j.labelled), str(j.failed), str(j.n), _fmt(j.accuracy),
                                    _fmt(j.cohen_kappa), _fmt(j.alpha_with_judge)] for name, j in self.judge.items()])

    def redaction_table(self) -> Optional[MarkdownTable]:
        if self.redaction is None:
            return None
        block = self.redaction
        return MarkdownTable(title="PII redacted before review",
                             columns=["kind", "distinct values", "occurrences"],
                             rows=[[kind, str(k.values), str(k.occurrences)] for kind, k in block.by_kind.items()],
                             note=f"{block.items_redacted} of {block.items} items had a value replaced by a token; "
                                  "the map back stays in the run dir.")

    def tables(self) -> list[MarkdownTable]:
        """Every table of the report, in order (sections add theirs through `section_tables`)."""
        tables = [self.alpha_table(), *self.per_label_tables(), *self.annotator_tables()]
        judge = self.judge_table()
        if judge is not None:
            tables.append(judge)
        redaction = self.redaction_table()
        if redaction is not None:
            tables.append(redaction)
        tables.extend(section_tables(self))
        return tables

    def to_markdown(self) -> str:
        lines = [f"# Agreement report: {self.project}", "",
                 f"Dataset `{self.dataset}`, guideline `{self.guideline_hash}`, {self.created}. Responses by status: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(self.responses.items())) or "none"), ""]
        for table in self.tables():
            lines += [f"## {table.title}", "", *table.to_markdown(), ""]
        return "\n".join(lines)


def section_tables(report: Report) -> list[MarkdownTable]:
    """The tables of the report's optional sections, by their registered renderers."""
    tables: list[MarkdownTable] = []
    for name, section in report.sections.items():
        renderer = SECTION_RENDERERS.get(name)
        if renderer is not None and section:
            tables.extend(renderer(section))
    return tables


# ---- building --------------------------------------------------------------------------------------------------

def _multi_label_block(table: pd.DataFrame, question: QuestionConfig, bootstrap: int, seed: int) -> AlphaBlock:
    """MASI alpha of the label sets, and a nominal alpha per label (does the response hold it: yes/no)."""
    invalid = int(table["value"].isna().sum())
    table = table.dropna(subset=["value"])
    block = AlphaBlock(**masi_alpha(table, bootstrap=bootstrap, seed=seed).model_dump(), invalid=invalid)
    sets = [set(json.loads(v)) for v in table["value"]]
    for label in question.labels or {}:
        held = table.assign(value=["yes" if label in s else "no" for s in sets])
        block.per_label[label] = krippendorff_alpha(held, AlphaLevel.nominal, value_domain=["no", "yes"],
                                                    bootstrap=bootstrap, seed=seed)
    return block


def _span_block(table: pd.DataFrame, question: QuestionConfig, bootstrap: int, seed: int,
                texts: dict[str, str]) -> AlphaBlock:
    """Token-level alpha over IOB2 tags (`bio_alpha`); an answer that does not parse (overlapping or unknown
    spans) is left out and counted."""
    shape = shape_of(question)
    invalid = sum(shape.canonical(v) is None for v in table["value"])
    result = bio_alpha(table, question, texts, bootstrap=bootstrap, seed=seed)
    return AlphaBlock(**{**result.model_dump(), "distance": "iob2-tokens"}, invalid=invalid)


def _alpha_block(table: pd.DataFrame, question: QuestionConfig, bootstrap: int, seed: int,
                 texts: Optional[dict[str, str]] = None) -> AlphaBlock:
    if question.kind == QuestionKind.multi_label:
        return _multi_label_block(table, question, bootstrap, seed)
    if question.kind == QuestionKind.span:
        return _span_block(table, question, bootstrap, seed, texts or {})
    domain = question.allowed_values or None
    result = krippendorff_alpha(table, question.alpha_level, value_domain=domain, bootstrap=bootstrap, seed=seed)
    interval = None
    if question.kind == QuestionKind.rating and question.alpha_level != AlphaLevel.interval:
        interval = krippendorff_alpha(table, AlphaLevel.interval, value_domain=domain, bootstrap=0).alpha
    return AlphaBlock(**result.model_dump(), alpha_interval=interval)


def _judge_block(table: pd.DataFrame, labels: pd.DataFrame, question: QuestionConfig) -> Optional[JudgeBlock]:
    """The LLM against the humans' label (accuracy, Cohen's kappa) and alpha with the LLM as one more coder."""
    rows = labels[labels["question"] == question.name]
    if rows.empty:
        return None
    ok = rows[rows["status"] == "ok"]
    # one LLM label per unit (the last one, as a dict built from the rows would keep)
    judged = pd.DataFrame({"unit": ok["item_id"].astype(str).to_numpy(), "annotator": JUDGE,
                           "value": ok["label"].astype(str).to_numpy()}).drop_duplicates("unit", keep="last")
    reference = vote_table(table.assign(unit=table["unit"].astype(str)), question)
    reference = reference[reference["label"].notna()]
    pairs = reference.merge(judged[["unit", "value"]], on="unit", how="inner")
    block = JudgeBlock(labelled=len(rows), ok=len(ok), failed=len(rows) - len(ok), n=len(pairs),
                       models=sorted(ok["model"].dropna().astype(str).unique().tolist()))
    if question.kind == QuestionKind.multi_label:  # label sets: exact-set accuracy and MASI alpha with the judge
        shape = shape_of(question)
        if len(pairs):
            block.accuracy = float(np.mean([shape.parse(v) == tuple(h) for v, h in zip(pairs["value"],
                                                                                       pairs["label"])]))
        judged = judged[judged["unit"].isin(set(table["unit"]))]
        with_judge = pd.concat([table.dropna(subset=["value"]), judged], ignore_index=True)
        block.alpha_with_judge = masi_alpha(with_judge, bootstrap=0).alpha
        return block
    if len(pairs):
        human, llm = pairs["label"].map(str).tolist(), pairs["value"].tolist()
        block.accuracy = float(accuracy_score(human, llm))
        kappa = cohen_kappa_score(human, llm, labels=[str(v) for v in question.allowed_values])
        block.cohen_kappa = None if pd.isna(kappa) else float(kappa)
    judged = judged[judged["unit"].isin(set(table["unit"]))]
    if question.kind == QuestionKind.rating:
        judged["value"] = judged["value"].astype(float).astype(int)
    with_judge = pd.concat([table, judged.astype({"value": table["value"].dtype})], ignore_index=True)
    block.alpha_with_judge = krippendorff_alpha(with_judge, question.alpha_level,
                                                value_domain=question.allowed_values or None, bootstrap=0).alpha
    return block


def build_report(config: ProjectConfig, annotations: pd.DataFrame, labels: Optional[pd.DataFrame] = None, *,
                 bootstrap: int = 1000, seed: int = 0) -> Report:
    """The report of a run's synced annotations (and LLM labels, when given)."""
    statuses = annotations.drop_duplicates(["record_id", "annotator"]).groupby("status").size()
    report = Report(project=config.name, dataset=config.argilla.dataset, guideline_hash=config.guideline_hash,
                    responses={str(status): int(n) for status, n in statuses.items()})
    for question in config.questions:
        if question.kind == QuestionKind.text:
            continue
        table = human_table(annotations, question)
        report.questions[question.name] = _alpha_block(table, question, bootstrap, seed,
                                                       field_texts(config, question))
        report.annotators[question.name] = annotator_agreement(table, question)
        if labels is not None:
            block = _judge_block(table, labels, question)
            if block is not None:
                report.judge[question.name] = block
    return report


def write_report(config: ProjectConfig, *, bootstrap: int = 1000, seed: int = 0,
                 annotations: Optional[pd.DataFrame] = None,
                 extra_sections: Optional[dict[str, Any]] = None) -> tuple[Report, Path]:
    """Build the report from the run dir and write `report.json` + `report.md`; returns the report and the json path.

    `extra_sections` are sections other stages computed (the CLI passes the judge's audit).

    Raises:
        RunFileError: no synced annotations (run `curate sync`), or a corrupt run file.
    """
    run = config.run_path
    if annotations is None:
        annotations = read_table(run, ANNOTATIONS, columns=["item_id", "question", "annotator", "value", "status"])
    labels = read_table(run, LABELS, required=False)
    report = build_report(config, annotations, labels, bootstrap=bootstrap, seed=seed)
    counts = read_redaction_counts(config)
    if counts is not None:
        try:
            report.redaction = RedactionBlock.model_validate(counts)
        except ValidationError as exc:
            raise RunFileError(f"{run}: redaction_counts.json is corrupt ({exc.errors()[0]['msg']}); move it away "
                               "and run `curate publish CONFIG` again (it is rewritten whenever items are loaded)"
                               ) from None
    for name, build in SECTION_BUILDERS.items():
        section = build(config, annotations)
        if section:
            report.sections[name] = section
    for name, section in (extra_sections or {}).items():  # computed by other stages (e.g. the judge's audit)
        if section:
            report.sections[name] = section
    honeypots, consensus = report.sections.get("honeypots"), report.sections.get("consensus")
    if honeypots and consensus and honeypots["question"] in consensus:  # skill next to honeypot accuracy
        consensus[honeypots["question"]]["honeypot_accuracy"] = {
            a["annotator"]: a["accuracy"] for a in honeypots["annotators"]}
    path = write_json(REPORT.path(run), report.model_dump(mode="json"))
    write_text(REPORT_MD.path(run), report.to_markdown())
    return report, path


def read_report(run: Union[ProjectConfig, str, Path], *, required: bool = True) -> Optional[Report]:
    """The run's `report.json` as a `Report` (None when absent and not required).

    Raises:
        RunFileError: absent (when required), or corrupt (not JSON, or not a report).
    """
    run_dir = run.run_path if isinstance(run, ProjectConfig) else Path(run)
    payload = read_json(run_dir, REPORT, required=required)
    if payload is None:
        return None
    try:
        return Report.model_validate(payload)
    except ValidationError as exc:
        raise RunFileError(f"{REPORT.path(run_dir)}: report.json is corrupt (not a report: "
                           f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}); run `curate report CONFIG` again"
                           ) from None
