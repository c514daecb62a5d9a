"""Report sections that later stages add (audit against the promise, honeypots, anchoring, consensus, redaction).

Each section has a builder `(config, annotations) -> dict | None` that reads the run-dir files it needs (never another
stage's code) and a renderer `(section) -> list[MarkdownTable]`. `write_report` runs every builder.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import pandas as pd

from ..config import ProjectConfig
from .render import MarkdownTable
from ..votes import counted
from .tables import human_table

__all__ = ["SECTION_BUILDERS", "SECTION_RENDERERS", "section"]

Builder = Callable[[ProjectConfig, pd.DataFrame], Optional[dict[str, Any]]]
Renderer = Callable[[dict[str, Any]], list[MarkdownTable]]

SECTION_BUILDERS: dict[str, Builder] = {}
SECTION_RENDERERS: dict[str, Renderer] = {}


def section(name: str, renderer: Renderer) -> Callable[[Builder], Builder]:
    """Register a report section: `@section("audit", render_audit)` above its builder."""

    def register(builder: Builder) -> Builder:
        SECTION_BUILDERS[name] = builder
        SECTION_RENDERERS[name] = renderer
        return builder

    return register


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_audit(section: dict[str, Any]) -> list[MarkdownTable]:
    """The audit: observed error of audited labels against the threshold's promise."""
    rows = [[question, str(q["routed"]), str(q["audited"]), str(q["errors"]), _f(q["error"]),
             f"[{_f(q['error_low'])}, {_f(q['error_high'])}]", _f(q["promised_error"]), q["verdict"]]
            for question, q in section.get("questions", {}).items()]
    return [MarkdownTable(title="Audit of auto-accepted labels",
                          columns=["question", "routed to audit", "reviewed", "wrong", "observed error",
                                   "95% interval", "promised error (at most)", "verdict"], rows=rows)]


SECTION_RENDERERS["audit"] = render_audit  # computed by the judge (`workspaces.judge.audit`), passed in by the CLI


def _consensus(config: ProjectConfig, annotations: pd.DataFrame) -> Optional[dict[str, Any]]:
    """Dawid-Skene next to the majority, per label question, on the counted responses (`human_table`)."""
    from ..config import QuestionKind
    from .consensus import dawid_skene

    section: dict[str, Any] = {}
    for question in config.questions:
        if question.kind != QuestionKind.label:
            continue
        result = dawid_skene(human_table(annotations, question), question)
        if result is not None:
            section[question.name] = result.to_json()
    return section or None


def render_consensus(section: dict[str, Any]) -> list[MarkdownTable]:
    tables = []
    for question, q in section.items():
        tables.append(MarkdownTable(
            title=f"{question}: annotator skill (Dawid-Skene: P(gives the true label))",
            columns=["annotator", "skill", "honeypot accuracy"],
            rows=[[a, _f(s), _f(q.get("honeypot_accuracy", {}).get(a))] for a, s in sorted(q["skill"].items())],
            note=f"{len(q['disagreements'])} of {q['units']} items where the strict majority and Dawid-Skene "
                 "disagree" + (": " + ", ".join(d["unit"] for d in q["disagreements"][:10]) if q["disagreements"]
                               else "") + "."))
    return tables


def render_honeypots(section: dict[str, Any]) -> list[MarkdownTable]:
    rows = [[a["annotator"], str(a["seen"]), _f(a["accuracy"]), f"[{_f(a['accuracy_low'])}, {_f(a['accuracy_high'])}]",
             _f(a["kappa"]), "paused" if a.get("paused") else ""] for a in section["annotators"]]
    rule = (f"Pause rule: below {section['min_accuracy']} after at least {section['min_seen']} honeypots."
            if section.get("min_accuracy") is not None else None)
    return [MarkdownTable(title=f"Honeypots ({section['question']}): {section['honeypots']} honeypots in the batches",
                          columns=["annotator", "honeypots answered", "accuracy", "95% interval (Wilson)",
                                   "Cohen's kappa", ""], rows=rows, note=rule)]


def render_anchoring(section: dict[str, Any]) -> list[MarkdownTable]:
    rows = [[r["measure"], f"{_f(r['suggested'])} (n={r['suggested_n']})", f"{_f(r['suppressed'])} "
             f"(n={r['suppressed_n']})", _f(r["difference"]),
             "n/a" if r["ci95"] is None else f"[{_f(r['ci95'][0])}, {_f(r['ci95'][1])}]"] for r in section["rows"]]
    return [MarkdownTable(title=f"Anchoring ({section['question']}): reviewers with and without the suggestion",
                          columns=["measure", "suggestion shown", "suggestion suppressed", "difference",
                                   "95% CI (bootstrap)"], rows=rows)]


def render_loop(section: dict[str, Any]) -> list[MarkdownTable]:
    """The label loop (`curate demo`): what humans spent, who decided what, and the promise measured on the labels
    that were held back."""
    human = section["human_labels"]
    multiplier = section.get("multiplier")
    summary = MarkdownTable(
        title="The label loop: human labels spent and what they bought", columns=["figure", "value"], rows=[
            ["items in the pool", str(section["items"])],
            ["items humans labelled (every batch: selected, honeypot, audit)", str(human["items"])],
            ["human responses", str(human["responses"])],
            ["few-shot examples in the LLM prompt (human labels too)", str(human.get("few_shot_examples", 0))],
            ["items with a curated label", str(section["curated_items"])],
            ["amplification (curated items / items humans labelled)",
             "n/a" if multiplier is None else f"{multiplier:.2f}x"]],
        note=f"Agreement (alpha) is measured on {section.get('alpha_on', 'the reviewed items')}.")
    tiers = MarkdownTable(title="Tiers: who decided, at what cost", columns=["tier", "items decided", "seconds",
                                                                             "gate"],
                          rows=[[t["labeler"], str(t.get("decided", 0)), str(t.get("seconds", "")),
                                 ", ".join(f"{q}: {g['decision']}" for q, g in (t.get("gates") or {}).items())]
                                for t in section.get("tiers", [])])
    rows = []
    for question, score in section.get("held_back", {}).items():
        for label, f in score["per_label"].items():
            rows.append([question, label, str(f["n"]), _f(f["precision"]),
                         f"[{_f(f['wilson_low'])}, {_f(f['wilson_high'])}]", _f(f.get("promise")),
                         "BROKEN" if label in score["broken"] else "held"])
    held = MarkdownTable(title="The promise, measured on held-back labels (items accepted without a human)",
                         columns=["question", "label", "items scored", "precision", "95% interval (Wilson)",
                                  "promise", "verdict"], rows=rows,
                         note="Held-back labels: the recorded annotators' majority on items no human reviewed in the "
                              "loop; no labeler, calibration or gate ever saw them.")
    tables = [summary, tiers, held]
    cost = section.get("cost")
    if cost:
        money = cost["currency"]
        tables.append(MarkdownTable(
            title=f"Cost per curated label, by tier ({money})",
            columns=["tier", "items decided", "seconds", "cost", "cost per label"],
            rows=[*[[t["tier"], str(t["decided"]), f"{t['seconds']:.0f}", f"{t['cost']:.2f}",
                     "n/a" if t["per_label"] is None else f"{t['per_label']:.4f}"] for t in cost["tiers"]],
                  ["all tiers", str(section["curated_items"]), "", f"{cost['total']:.2f}",
                   "n/a" if cost["per_curated_label"] is None else f"{cost['per_curated_label']:.4f}"],
                  ["all-human baseline", str(section["curated_items"]), "", f"{cost['all_human']:.2f}",
                   "n/a" if cost["all_human_per_label"] is None else f"{cost['all_human_per_label']:.4f}"]],
            note=f"Prices: a reviewer's hour {cost['prices']['human_per_hour']:g}, the machine's hour "
                 f"{cost['prices']['machine_per_hour']:g}; {cost['timed_responses']} of {cost['responses']} human "
                 f"responses had a real time on task, the others are costed at "
                 f"{cost['prices']['human_seconds_per_response']:g} s. The baseline: every curated item labelled by "
                 f"humans at {cost['responses_per_item']:.2f} responses per item."))
    return tables


def render_timing(section: dict[str, Any]) -> list[MarkdownTable]:
    rows = [[a["annotator"], str(a["responses"]), str(a["measured"]), str(a["untimed"]), str(a["too_fast"]),
             "n/a" if a["median_seconds"] is None else f"{a['median_seconds']:.1f}"] for a in section["annotators"]]
    excluded = "excluded" if section.get("enabled") else "not excluded: timing.enabled is off"
    return [MarkdownTable(
        title=f"Time on task: submitted responses faster than a person reads the record ({excluded})",
        columns=["annotator", "submitted", "timed", "untimed (replayed or imported)", "too fast",
                 "median seconds (timed)"], rows=rows,
        note=f"Too fast: under the record's words / {section['words_per_second']:g} words per second since the "
             f"reviewer's previous response; a gap over {section['session_break']:g} s starts a session (not timed).")]


@section("timing", render_timing)
def _timing(config: ProjectConfig, annotations: pd.DataFrame) -> Optional[dict[str, Any]]:
    """Per reviewer: submitted responses, how many were timed, untimed, and too fast (flagged by `curate sync`)."""
    if "timing" not in annotations.columns or annotations.empty:
        return None
    submitted = annotations[annotations["status"] == "submitted"].drop_duplicates(["item_id", "annotator"])
    rows = []
    for annotator, mine in submitted.groupby("annotator", sort=True):
        timed = mine[mine["timing"] == "measured"]
        median = timed["seconds"].median() if len(timed) else None
        rows.append({"annotator": str(annotator), "responses": int(len(mine)), "measured": int(len(timed)),
                     "untimed": int((mine["timing"] == "untimed").sum()),
                     "too_fast": int((timed["seconds"] < timed["min_seconds"]).sum()),  # flagged when enabled
                     "median_seconds": None if median is None or pd.isna(median) else float(median)})
    return {"enabled": config.timing.enabled, "words_per_second": config.timing.words_per_second,
            "session_break": config.timing.session_break, "annotators": rows} if rows else None


def render_qualification(section: dict[str, Any]) -> list[MarkdownTable]:
    rows = [[r["annotator"], r["status"], r["evidence"], str(r["scored"]), str(r["correct"]), _f(r["accuracy"]),
             f"[{_f(r['wilson_low'])}, {_f(r['wilson_high'])}]"] for r in section["reviewers"]]
    return [MarkdownTable(
        title=f"Qualification ({section['question']}): responses count once a reviewer agrees with gold",
        columns=["reviewer", "status", "evidence", "scored", "agree with gold", "accuracy", "95% interval (Wilson)"],
        rows=rows, note=f"Qualified: accuracy of at least {section['min_agreement']:.0%} on at least "
                        f"{section['batch']} scored gold answers: the last qualification batch, else their answers on "
                        "the project's gold items, each scored against a gold column or the other reviewers' label. "
                        "Others' responses are kept, never counted.")]


def render_guideline_versions(section: dict[str, Any]) -> list[MarkdownTable]:
    questions = section["questions"]
    rows = [[f"`{v['guideline_hash']}`" + (" (current)" if v["current"] else ""), str(v["responses"]),
             str(v["items"]), *[_f(v["alpha"].get(q)) for q in questions]] for v in section["versions"]]
    return [MarkdownTable(title="Agreement per guideline version (the guidelines in force when each response was "
                                "given)", columns=["guideline version", "responses", "items",
                                                   *[f"alpha {q}" for q in questions]], rows=rows,
                          note="A response keeps the version it was given under until it changes; compare the rows "
                               "to see whether a guideline change helped.")]


@section("guideline_versions", render_guideline_versions)
def _guideline_versions(config: ProjectConfig, annotations: pd.DataFrame) -> Optional[dict[str, Any]]:
    """Counted responses and alpha per guideline version (`guideline_hash`, stamped by `curate sync`)."""
    from ..config import QuestionKind
    from .alpha import AgreementError, krippendorff_alpha

    if "guideline_hash" not in annotations.columns or annotations.empty:
        return None
    questions = [q for q in config.questions if q.kind in (QuestionKind.label, QuestionKind.rating)]
    versions = []
    for version, rows in annotations.groupby("guideline_hash", sort=False):
        counted_rows = counted(rows)
        alpha: dict[str, Optional[float]] = {}
        for question in questions:
            try:
                alpha[question.name] = krippendorff_alpha(human_table(counted_rows, question), question.alpha_level,
                                                          value_domain=question.allowed_values or None,
                                                          bootstrap=0).alpha
            except (AgreementError, ValueError):
                alpha[question.name] = None
        versions.append({"guideline_hash": str(version), "current": version == config.guideline_hash,
                         "responses": int(counted_rows.drop_duplicates(["item_id", "annotator"]).shape[0]),
                         "items": int(counted_rows["item_id"].nunique()), "alpha": alpha})
    return {"questions": [q.name for q in questions], "versions": versions}


SECTION_RENDERERS["qualification"] = render_qualification  # computed by `workspaces.review.qualification`
SECTION_RENDERERS["loop"] = render_loop  # computed by `curate demo` (`workspaces.review.loop`)
SECTION_BUILDERS["consensus"] = _consensus
SECTION_RENDERERS["consensus"] = render_consensus
SECTION_RENDERERS["honeypots"] = render_honeypots  # computed by `workspaces.review.honeypots`, passed in by the CLI
SECTION_RENDERERS["anchoring"] = render_anchoring  # computed by `workspaces.review.suppression`
