"""The dataset card (README.md with a YAML header) of a curated dataset.

It states the task and labels, rows per split and per source, what was excluded, Krippendorff's alpha per question
with its CI and the labeler-vs-human figures (from `report.json` when present), the LLM models and
prompt hashes, the guideline hash, the annotator count, and the license and attribution of the source data.
It is built from the config, the curated dataset and the report only: no credential ever reaches it.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..agreement import Report
from ..config import ProjectConfig, QuestionKind, TaskKind
from ..encoders import NAMED_ENCODERS, NamedEncoder
from ..ledger import decisions_head
from .build import SPLITS, CuratedDataset

__all__ = ["card_body", "card_metadata", "render_card"]

_SOURCE_TEXT = {
    "gold": "gold item: the human labels recorded with the source data",
    "human-consensus": "two or more reviewers, final label by strict majority (median for ratings)",
    "human-single": "one reviewer",
    "llm-reviewed": "an LLM label reviewed by humans, who agreed with it or overrode it",
    "auto-accepted": "a labeler's label no human gave, accepted because the gate was open (see 'Gate')",
    "unverified": "a labeler's label no human gave and no gate allowed (kept only because the config asks)",
}


def card_metadata(config: ProjectConfig, curated: CuratedDataset) -> dict[str, Any]:
    """The YAML header: license, task categories, size, tags and the `configs` data files of each split."""
    total = sum(curated.rows.values())
    kinds = {q.kind for q in config.questions}
    tasks = ((["text-classification"] if kinds & {QuestionKind.label, QuestionKind.multi_label, QuestionKind.rating}
              else []) + (["token-classification"] if QuestionKind.span in kinds else [])) or ["text-generation"]
    tags = ["curate", "argilla", "distilabel", "human-feedback", "provenance"]
    if config.task == TaskKind.preference:  # prompt / chosen / rejected pairs: preference data for DPO / reward models
        tasks, tags = ["text-generation"], [*tags, "dpo", "preference"]
    return {
        "license": _license_id(config),
        "pretty_name": config.name,
        "task_categories": tasks,
        "tags": tags,
        "size_categories": [_size_category(total)],
        "configs": [{"config_name": "default", "data_files": [
            {"split": name, "path": f"data/{name}-*"} for name in _ordered(curated.rows)]}],
    }


def card_body(config: ProjectConfig, curated: CuratedDataset, report: Optional[Report] = None) -> str:
    """The Markdown body of the card."""
    out: list[str] = [f"# {config.name}", ""]
    if config.description:
        out += [config.description, ""]
    out += ["Curated with `curate`: reviewers labeled in Argilla, an LLM labeled through Distilabel, and every "
            "final label carries its provenance (who or what decided it, how much the reviewers agreed).", ""]
    out += _task_section(config)
    out += _splits_section(config, curated)
    out += _agreement_section(config, report)
    out += _judge_section(report)
    out += _gate_section(curated, report)
    out += _loop_card_section(report)
    out += _qualification_card_section(report)
    out += _provenance_section(config, curated)
    out += _license_section(config)
    return "\n".join(out).rstrip() + "\n"


def render_card(config: ProjectConfig, curated: CuratedDataset, report: Optional[Report] = None) -> str:
    """The full README.md: YAML header + body, normalised the way `huggingface_hub.DatasetCard` writes it."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**card_metadata(config, curated))
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{card_body(config, curated, report)}"))


# ---- sections ----------------------------------------------------------------------------------------------------

def _task_section(config: ProjectConfig) -> list[str]:
    out = ["## Task", "", "| question | kind | labels / scale | level of measurement |", "|---|---|---|---|"]
    for q in config.questions:
        scale = ", ".join(f"`{v}`" for v in q.allowed_values) or "free text"
        out.append(f"| `{q.name}` | {q.kind.value} | {scale} | {q.alpha_level.value} |")
    out.append("")
    for q in config.questions:
        out.append(f"**{q.name}**" + (f": {_one_line(q.title)}" if q.title else ""))
        out.append("")
        for label, description in (q.labels or {}).items():
            out.append(f"- `{label}`: {_one_line(description)}")
        if q.labels:
            out.append("")
    out += ["Final labels: for a label question, the strict majority (more than half) of the submitted human "
            "responses; for a rating question, the **median** of the submitted ratings (the lower median when the "
            "count is even, so the value stays on the scale). An item no human labeled gets a label only when the "
            "gate allows it (`auto-accepted`, see 'Gate'); otherwise it is left out. Items whose reviewers disagree "
            "with no majority are "
            + ("excluded" if config.hub.exclude_no_majority else "kept with an empty label") + ".", ""]
    return out


def _splits_section(config: ProjectConfig, curated: CuratedDataset) -> list[str]:
    rows = curated.rows
    names = _ordered(rows)
    out = ["## Splits", "", "| split | rows |", "|---|---|"]
    out += [f"| {name} | {rows[name]} |" for name in names]
    out += [f"| **total** | {sum(rows.values())} |", ""]
    if config.task == TaskKind.preference:
        out.append(f"Each row is a pair in TRL's conventions (`prompt`, `chosen`, `rejected`, "
                   f"{config.hub.dpo_format or 'standard'} form) with `score_chosen` / `score_rejected` and who "
                   f"decided it (`source`, `n_annotators`, `agreement`, `gate_id`, the judge's model and prompt hash). "
                   f"Train/test are split by prompt with a fixed seed ({config.hub.seed}, test "
                   f"{config.hub.test_size:g}): no prompt is in two splits. Pairs decided `tie` or `both-bad` are "
                   "left out and counted below.")
    else:
        out.append(f"Train/validation/test are drawn with a fixed seed ({config.hub.seed}), stratified by "
                   f"`{curated.primary_question}` (test {config.hub.test_size:g}, validation "
                   f"{config.hub.validation_size:g}).")
    if "gold" in rows:
        out.append("The `gold` split holds the gold items (labels recorded with the source data); they never appear "
                   "in train, validation or test.")
    out += [""] + [f"> Note: {note}" for note in curated.notes] + ([""] if curated.notes else [])
    out += [f"### Rows per source (item level: the source of `{curated.primary_question}`)", ""]
    out += _source_table(curated.counts_by_source(), names)
    for q in config.questions:
        if q.name != curated.primary_question and config.task != TaskKind.preference:
            out += [f"Per question `{q.name}`:", ""]
            out += _source_table(curated.counts_by_source(q.name), names)
    out += ["Sources: " + "; ".join(f"`{s}` = {text}" for s, text in _SOURCE_TEXT.items()) + ".", ""]
    excluded = {k: v for k, v in curated.excluded.items() if v}
    out += ["### Excluded", ""]
    if not excluded:
        out += ["Nothing was excluded.", ""]
    else:
        for key, value in excluded.items():
            out.append(f"- {key.replace('_', ' ')}: {value}")
            if key == "no_majority":
                out += [f"  - `{q}`: {n} item(s) whose reviewers had no majority"
                        for q, n in curated.excluded_by_question.items()]
        out.append("")
    return out


def _source_table(counts: dict[str, dict[str, int]], names: list[str]) -> list[str]:
    sources = sorted({s for split in counts.values() for s in split}, key=_source_order)
    out = ["| source | " + " | ".join(names) + " | total |", "|---" * (len(names) + 2) + "|"]
    for source in sources:
        values = [counts.get(name, {}).get(source, 0) for name in names]
        label = "(none)" if source in ("None", "nan") else f"`{source}`"
        out.append(f"| {label} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |")
    return out + [""]


def _agreement_section(config: ProjectConfig, report: Optional[Report]) -> list[str]:
    out = ["## Agreement between reviewers (Krippendorff's alpha)", ""]
    if report is None or not report.questions:
        return out + ["No agreement figures: `report.json` is absent from the run (run `curate report`).", ""]
    return out + report.alpha_table().to_markdown() + [""]


def _judge_section(report: Optional[Report]) -> list[str]:
    table = report.judge_table() if report is not None else None
    if table is None:
        return []
    return ["## LLM labeler vs humans", "",
            "Measured against the humans' label of each item, by the same rule as the final labels below.", "",
            *table.to_markdown(), ""]


def _gate_section(curated: CuratedDataset, report: Optional[Report]) -> list[str]:
    out = ["## Gate: labels no human gave", ""]
    if not curated.gates:
        return out + ["No labeler was triaged (`curate triage`): every label in this dataset was given by humans.",
                      ""]
    auto = {q: sum(counts.get("auto-accepted", 0) for counts in curated.counts_by_source(q).values())
            for q in curated.gates}
    out += ["| question | gate | threshold | promised precision | held-out precision (95% lower bound) | coverage "
            "| auto-accepted rows |", "|---|---|---|---|---|---|---|"]
    for question, gate in curated.gates.items():
        state = "**open**" if gate["open"] else "**closed**"
        out.append(f"| `{question}` | {state} | {_num(gate.get('threshold'))} | {_num(gate.get('target_precision'))} "
                   f"| {_num(gate.get('precision'))} ({_num(gate.get('precision_lower'))}) | "
                   f"{_num(gate.get('coverage'))} | {auto.get(question, 0)} |")
    out.append("")
    for question, gate in curated.gates.items():
        out.append(f"- `{question}`: {_one_line(gate.get('reason') or '')}")
    audit = (report.sections.get("audit") if report is not None else None) or {}
    for question, figures in (audit.get("questions") or {}).items():
        out.append(f"- audit of `{question}`: {figures.get('audited', 0)} audited item(s) reviewed, observed error "
                   f"{_num(figures.get('error'))} (95% interval [{_num(figures.get('error_low'))}, "
                   f"{_num(figures.get('error_high'))}]) against a promised error of at most "
                   f"{_num(figures.get('promised_error'))}: {figures.get('verdict', '')}")
    return out + [""]


def _loop_card_section(report: Optional[Report]) -> list[str]:
    """The label loop's figures (`curate demo`): human labels spent, amplification, tiers, and the promise measured on
    held-back labels; the same tables as the report."""
    from ..agreement.sections import render_loop

    loop = report.sections.get("loop") if report is not None else None
    return _tables("The label loop: what humans spent, and the promise checked on held-back labels",
                   render_loop(loop)) if loop else []


def _qualification_card_section(report: Optional[Report]) -> list[str]:
    """Who counted: every reviewer's qualification standing and its evidence (the report's table)."""
    from ..agreement.sections import render_qualification

    section = report.sections.get("qualification") if report is not None else None
    return _tables("Reviewers: who counted", render_qualification(section)) if section else []


def _tables(heading: str, tables: list[Any]) -> list[str]:
    """A card section of report tables (each with its title in bold)."""
    out = [f"## {heading}", ""]
    for table in tables:
        out += [f"**{table.title}**", "", *table.to_markdown(), ""]
    return out


def _provenance_section(config: ProjectConfig, curated: CuratedDataset) -> list[str]:
    out = ["## Provenance", "",
           f"- Guideline version (hash of the guidelines and questions): `{config.guideline_hash}`",
           f"- Human annotators with submitted responses: {len(curated.annotators)}"]
    chain = decisions_head(config.run_path)
    out.append(f"- Decision ledger: entry {chain.entries} of the run's hash-chained `ledger.jsonl` (its last "
               f"decision before this push), hash `{chain.hash}`; `curate verify CONFIG` checks the chain")
    out += [f"- Embedding model: {encoder.describe()}" for encoder in _named_encoders_used(config, curated)]
    if curated.llm:
        out += ["- LLM labels:", "", "  | question | model | prompt hash |", "  |---|---|---|"]
        out += [f"  | `{m['question']}` | `{m['model']}` | `{m['prompt_hash']}` |" for m in curated.llm]
    else:
        out.append("- LLM labels: none in this run")
    out += ["", "Columns, per question `q`: `q` (final label), `q_source`, `q_agreement` (share of the reviewers "
            "who gave the final label), `q_annotators` and `q_values` (each reviewer's answer), `q_llm_label`, "
            "`q_llm_confidence`, `q_llm_model`, `q_llm_prompt_hash`, `q_llm_overridden` (the reviewers' final label "
            "differs from the LLM's). Per item: `source`, `agreement` (of the primary question), `annotators`, "
            "`n_annotators`, `guideline_hash`, `first_annotated_at` / `last_annotated_at` (UTC).", ""]
    return out


def _named_encoders_used(config: ProjectConfig, curated: CuratedDataset) -> list[NamedEncoder]:
    """The named encoders (workspaces/encoders.py) behind this dataset: the config's `embeddings.model`, and any a
    labeler's identity names (the student's `student:...@<encoder>[+...]`)."""
    names = {config.embeddings.model} if config.embeddings is not None else set()
    for m in curated.llm:
        names.update(re.split(r"[@+]", str(m["model"]))[1:])
    return [encoder for name, encoder in NAMED_ENCODERS.items() if name in names]


def _license_section(config: ProjectConfig) -> list[str]:
    out = ["## Source data, license and attribution", ""]
    out.append(f"- License of the source data: {config.data.license or 'not stated in the project config'}")
    out.append(f"- License of this dataset: {_license_id(config)}")
    if config.data.attribution:
        out.append(f"- Attribution: {_one_line(config.data.attribution)}")
    return out + [""]


# ---- helpers -----------------------------------------------------------------------------------------------------

def _license_id(config: ProjectConfig) -> str:
    if config.hub.license:
        return config.hub.license
    text = (config.data.license or "").strip().lower()
    candidate = re.sub(r"[\s_]+", "-", text)
    return candidate if re.fullmatch(r"[a-z0-9.+-]+", candidate or "-") and candidate else "other"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _ordered(rows: dict[str, int]) -> list[str]:
    return [s for s in SPLITS if s in rows] + sorted(s for s in rows if s not in SPLITS)


def _source_order(source: str) -> tuple[int, str]:
    order = list(_SOURCE_TEXT)
    return (order.index(source) if source in order else len(order), source)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:.3f}"
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
