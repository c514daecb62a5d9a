"""The agreement report: Krippendorff's alpha per question, per-annotator agreement, and the judge against humans.

Reads the synced table (`annotations.parquet`, submitted responses only) and, when present, the LLM labels
(`labels.parquet`); writes `<run dir>/report.json` and `<run dir>/report.md`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from sklearn.metrics import accuracy_score, cohen_kappa_score

from .agreement import annotator_agreement, krippendorff_alpha, strict_majority
from .config import AlphaLevel, ProjectConfig, QuestionConfig, QuestionKind
from .items import ANNOTATIONS_FILE, LABELS_FILE, REPORT_FILE
from .sync import read_annotations

__all__ = ["JUDGE", "build_report", "human_table", "render_markdown", "write_report"]

REPORT_MD = "report.md"
JUDGE = "llm-judge"


def human_table(annotations: pd.DataFrame, question: QuestionConfig) -> pd.DataFrame:
    """Submitted values for one question as `unit, annotator, value`, typed for the question's scale."""
    rows = annotations[(annotations["question"] == question.name) & (annotations["status"] == "submitted")]
    table = pd.DataFrame({"unit": rows["item_id"].astype(str), "annotator": rows["annotator"].astype(str),
                          "value": rows["value"]})
    if question.kind == QuestionKind.rating:
        table["value"] = table["value"].astype(int)
    return table.reset_index(drop=True)


def _alpha_block(table: pd.DataFrame, question: QuestionConfig, bootstrap: int, seed: int) -> dict[str, Any]:
    domain = question.allowed_values or None
    result = krippendorff_alpha(table, question.alpha_level, value_domain=domain, bootstrap=bootstrap, seed=seed)
    block = result.model_dump(mode="json")
    if question.kind == QuestionKind.rating and question.alpha_level != AlphaLevel.interval:
        block["alpha_interval"] = krippendorff_alpha(table, AlphaLevel.interval, value_domain=domain,
                                                     bootstrap=0).alpha
    else:
        block["alpha_interval"] = None
    return block


def _judge_block(table: pd.DataFrame, labels: pd.DataFrame, question: QuestionConfig) -> Optional[dict[str, Any]]:
    """The judge against the strict human majority (accuracy, Cohen's kappa) and alpha with the judge as a coder."""
    rows = labels[labels["question"] == question.name]
    if rows.empty:
        return None
    ok = rows[rows["status"] == "ok"]
    judge = dict(zip(ok["item_id"].astype(str), ok["label"].astype(str)))
    majorities = {unit: strict_majority([str(v) for v in group["value"]]) for unit, group in table.groupby("unit")}
    pairs = [(majority, judge[unit]) for unit, majority in majorities.items() if majority is not None and unit in judge]
    block: dict[str, Any] = {"labelled": int(len(rows)), "ok": int(len(ok)), "failed": int(len(rows) - len(ok)),
                             "n": len(pairs), "accuracy": None, "cohen_kappa": None, "alpha_with_judge": None,
                             "models": sorted(ok["model"].dropna().astype(str).unique().tolist())}
    if pairs:
        human, llm = zip(*pairs)
        block["accuracy"] = float(accuracy_score(human, llm))
        kappa = cohen_kappa_score(human, llm, labels=[str(v) for v in question.allowed_values])
        block["cohen_kappa"] = None if pd.isna(kappa) else float(kappa)
    judged = pd.DataFrame({"unit": list(judge), "annotator": JUDGE, "value": list(judge.values())})
    judged = judged[judged["unit"].isin(set(table["unit"]))]
    if question.kind == QuestionKind.rating:
        judged["value"] = judged["value"].astype(float).astype(int)
    with_judge = pd.concat([table, judged.astype({"value": table["value"].dtype})], ignore_index=True)
    block["alpha_with_judge"] = krippendorff_alpha(with_judge, question.alpha_level,
                                                   value_domain=question.allowed_values or None, bootstrap=0).alpha
    return block


def build_report(config: ProjectConfig, annotations: pd.DataFrame, labels: Optional[pd.DataFrame] = None, *,
                 bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The report as a JSON-ready dict (see module docstring)."""
    report: dict[str, Any] = {
        "project": config.name,
        "dataset": config.argilla.dataset,
        "guideline_hash": config.guideline_hash,
        "responses": {status: int(n) for status, n in
                      annotations.drop_duplicates(["record_id", "annotator"]).groupby("status").size().items()},
        "questions": {},
        "annotators": {},
    }
    judge: dict[str, Any] = {}
    for question in config.questions:
        if question.kind == QuestionKind.text:
            continue
        table = human_table(annotations, question)
        report["questions"][question.name] = _alpha_block(table, question, bootstrap, seed)
        report["annotators"][question.name] = [a.model_dump() for a in annotator_agreement(table)]
        if labels is not None:
            block = _judge_block(table, labels, question)
            if block is not None:
                judge[question.name] = block
    if judge:
        report["judge"] = judge
    return report


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    """A short human-readable version of the report."""
    lines = [f"# Agreement report: {report['project']}", "",
             f"Dataset `{report['dataset']}`, guideline `{report['guideline_hash']}`. Responses by status: "
             + ", ".join(f"{k} {v}" for k, v in sorted(report["responses"].items())), "",
             "## Krippendorff's alpha (submitted responses)", "",
             "| question | level | alpha | 95% CI | interval alpha | units | annotators | pairable values |",
             "|---|---|---|---|---|---|---|---|"]
    for name, q in report["questions"].items():
        ci = "n/a" if q["ci95"] is None else f"[{q['ci95'][0]:.3f}, {q['ci95'][1]:.3f}]"
        lines.append(f"| {name} | {q['level']} | {_fmt(q['alpha'])} | {ci} | {_fmt(q['alpha_interval'])} "
                     f"| {q['units']} | {q['annotators']} | {q['pairable']} |")
    lines += ["", "## Per-annotator agreement with the leave-one-out majority", ""]
    for name, annotators in report["annotators"].items():
        lines += [f"**{name}**", "", "| annotator | units | compared | agreement |", "|---|---|---|---|"]
        lines += [f"| {a['annotator']} | {a['units']} | {a['compared']} | {_fmt(a['agreement'])} |" for a in annotators]
        lines.append("")
    if report.get("judge"):
        lines += ["## LLM judge against the human majority", "",
                  "| question | labelled | failed | compared | accuracy | Cohen's kappa | alpha with judge |",
                  "|---|---|---|---|---|---|---|"]
        for name, j in report["judge"].items():
            lines.append(f"| {name} | {j['labelled']} | {j['failed']} | {j['n']} | {_fmt(j['accuracy'])} "
                         f"| {_fmt(j['cohen_kappa'])} | {_fmt(j['alpha_with_judge'])} |")
    return "\n".join(lines) + "\n"


def write_report(config: ProjectConfig, *, bootstrap: int = 1000, seed: int = 0) -> tuple[dict[str, Any], Path]:
    """Build the report from the run dir and write `report.json` + `report.md`; returns the report and the json path."""
    run = config.run_path
    annotations = read_annotations(run / ANNOTATIONS_FILE)
    labels_path = run / LABELS_FILE
    labels = pd.read_parquet(labels_path) if labels_path.is_file() else None
    report = build_report(config, annotations, labels, bootstrap=bootstrap, seed=seed)
    run.mkdir(parents=True, exist_ok=True)
    path = run / REPORT_FILE
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (run / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    return report, path
