"""`curate demo`: the main job on the embedded defaults. The label loop (`workspaces.review.loop`) with real human
labels: the data's recorded annotators, replayed as Argilla users for exactly the items the loop sends to review.
Every other item's recorded labels are held back, and score, at the end, the labels that no human gave."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import typer

from ..config import ProjectConfig, TaskKind
from ..errors import ConfigError, PromiseBrokenError
from ..rundir import CALIBRATION, REVIEWER_LOGIN, read_json, write_json
from ._app import app, command, load
from .agreement import print_report, report_with_sections
from .console import console, progress_bar, say, stage

if TYPE_CHECKING:
    import argilla as rg
    import pandas as pd

    from ..agreement import Report
    from ..review.loop import HeldBackScore, LoopResult, LoopRound
    from ..review.plan import ReviewBatch

__all__ = ["REVIEWER", "ArgillaHumans", "held_back", "reviewer_login", "run_demo"]

REVIEWER = "reviewer"


def reviewer_login(config: ProjectConfig) -> tuple[str, str]:
    """The demo reviewer's username and password (generated once, kept in the run dir with 0600 permissions)."""
    data = read_json(config.run_path, REVIEWER_LOGIN, required=False)
    if data:
        return data["username"], data["password"]
    password = secrets.token_urlsafe(9)
    write_json(REVIEWER_LOGIN.path(config.run_path), {"username": REVIEWER, "password": password})
    return REVIEWER, password


def held_back(config: ProjectConfig) -> ProjectConfig:
    """The demo's project: its humans are the recorded annotators replayed through Argilla, so the reference counts
    only what was synced from the server (`reference.recorded: false`); the recorded labels are never read as labels
    except to replay the reviewed items and, at the end, to score the labels no human gave."""
    return config.model_copy(update={"reference": config.reference.model_copy(update={"recorded": False})})


def _f(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class ArgillaHumans:
    """The demo's humans (`workspaces.review.loop.Humans`): each planned batch is published to Argilla in its order
    (suppressed items without a suggestion), the recorded annotators of exactly those items submit their recorded
    answers as Argilla users, the responses are synced back, and the honeypot pause rule runs."""

    def __init__(self, client: "rg.Argilla", recorded: "pd.DataFrame") -> None:
        self.client = client
        self.recorded = recorded
        self.seconds = 0.0  # spent publishing, replaying and syncing in this run

    def __call__(self, config: ProjectConfig, batch: "ReviewBatch") -> None:
        from ..argilla_io.annotators import paused
        from ..argilla_io.publish import publish
        from ..argilla_io.replay import replay_recorded_labels
        from ..argilla_io.sync import sync
        from ..config import slug
        from .argilla import apply_pause_rule

        started = time.perf_counter()
        order = batch.plan.sort_values("position")["item_id"].tolist()
        with progress_bar(f"Publishing batch {batch.batch}", "records") as update:
            published = publish(config, self.client, item_ids=order, suppressed=batch.suppressed, progress=update)
        stopped = paused(config)  # a paused annotator stays out: their recorded labels are not submitted
        labels = self.recorded[self.recorded["item_id"].isin(set(order))
                               & ~self.recorded["annotator"].map(slug).isin(set(stopped))]
        with progress_bar("Replaying the recorded annotators", "responses") as update:
            replayed = replay_recorded_labels(config, self.client, labels=labels, progress=update)
        synced = sync(config, self.client)
        say(f"batch {batch.batch}: " + _roles(batch.plan) + f"; published {published.records} records "
            f"({published.suggestions} suggestions); {len(replayed.annotators)} recorded annotators submitted "
            f"{replayed.responses} responses ({replayed.unchanged} already there); synced {synced.responses}")
        for annotator, reason in apply_pause_rule(config, self.client):
            say(f"{annotator} paused by the honeypot rule: {reason}; removed from workspace "
                f"{config.argilla.workspace}, their responses no longer count", style="red")
        self.seconds += time.perf_counter() - started


def _roles(plan: "pd.DataFrame") -> str:
    roles = plan["role"].value_counts().to_dict()
    parts = [f"{roles[r]} {name}" for r, name in (("selected", "selected"), ("honeypot", "honeypots"),
                                                  ("audit", "audit items")) if roles.get(r)]
    return (" + ".join(parts) + f" = {len(plan)} items in random order, {int(plan['suppressed'].sum())} of them "
            "without the suggestion")


def _describe_round(config: ProjectConfig, done: "LoopRound") -> None:
    how = (" (done by an earlier run of this run dir)" if done.resumed else
           f" (a random gold set of {config.selection.gold}: the labeler is calibrated on it)"
           if done.number == 0 and config.selection.gold else
           " (a cold start: no human label yet, so k-center diversity)" if done.number == 0 else
           " (the student's least sure items among those routed to review)")
    say(f"round {done.number}{how}: {done.human_items} items reviewed so far")
    calibration = read_json(config.run_path, CALIBRATION, required=False) if not done.resumed else None
    for question, q in ((calibration or {}).get("questions") or {}).items():
        model = (q.get("labeler") or {}).get("model")
        sets = "hamming_loss" in q
        retrained = ", retrained on every human label so far," if calibration["labeler"] != "llm" else ""
        say(f"{question}: the {calibration['labeler']}{f' ({model})' if model else ''}{retrained} measured on "
            f"{q['n']} reference items: accuracy {_f(q['accuracy'])}"
            + (" (exact set)" if sets else "") + f", Cohen's kappa {_f(q['kappa'])}"
            + (" (mean per label)" if sets else "") + f", alpha {_f(q['alpha'])}, ECE {_f(q['ece'])}")
    for question, decision in done.gates.items():
        say(f"gate {question}: {decision.decision.upper()} - {decision.reason}",
            style="green" if decision.decision == "pass" else "red")
    say(f"routes: auto {done.routes['auto']}, audit {done.routes['audit']}, review {done.routes['review']}")


def _describe_review(report: "Report") -> list[str]:
    """What the demo's honeypot and anchoring tables say, in words."""
    lines = []
    honeypots = report.sections.get("honeypots")
    if honeypots:
        seen = [a["seen"] for a in honeypots["annotators"]]
        stopped = [a["annotator"] for a in honeypots["annotators"] if a.get("paused")]
        lines.append(f"honeypots: {len(honeypots['annotators'])} recorded annotators answered {min(seen)}-{max(seen)} "
                     f"of the {honeypots['honeypots']} honeypots; "
                     + (f"paused by the rule: {', '.join(stopped)}" if stopped else
                        f"nobody is below {honeypots['min_accuracy']} after {honeypots['min_seen']} honeypots, "
                        "so nobody is paused"))
    anchoring = report.sections.get("anchoring")
    if anchoring:
        agree = anchoring["rows"][0]
        difference = "n/a" if agree["difference"] is None else f"{agree['difference']:+.3f}"
        lines.append(f"anchoring: agreement with the suggestion {_f(agree['suggested'])} shown vs "
                     f"{_f(agree['suppressed'])} suppressed (difference {difference}). The recorded annotators "
                     "labelled without any suggestion and are replayed as they were, so the true effect here is 0 "
                     "by construction of a replay; what the table shows is sampling noise between the two item sets. "
                     "With live reviewers, the same table measures how much the suggestion anchors them.")
    return lines


LLM_TIER_ITEMS = 200  # gold items the LLM tier is measured on: enough for the gate's min_reference, at ~2.5 items/s


def _money(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _llm_tier(config: ProjectConfig, result: "LoopResult") -> dict[str, Any]:
    """The LLM as the next tier: it labels a seeded sample of the gold set (else of the first batch) the humans
    reviewed, at most `LLM_TIER_ITEMS`, and is calibrated and gated on it. Its gate decides whether it may take what
    the student left; only when it opens would labelling those items be worth its time."""
    from pipelines import label_items

    from ..items import load_gold_ids
    from ..judge import calibrate, run_gate
    from ..review.plan import read_plan

    plan = read_plan(config)
    first = sorted(load_gold_ids(config)) or sorted(plan.loc[plan["batch"] == plan["batch"].iloc[0], "item_id"])
    if len(first) > LLM_TIER_ITEMS:
        first = sorted(np.random.default_rng(config.selection.seed).choice(first, LLM_TIER_ITEMS, replace=False))
    started = time.perf_counter()
    with progress_bar("LLM labels", "items") as update:
        labelled = label_items(config, item_ids=first, progress=update)
    calibration = calibrate(config, "llm")
    decisions = run_gate(config, "llm")
    tier = {"labeler": "llm", "items_labelled": len(first), "seconds": round(time.perf_counter() - started, 1),
            "items_per_second": round(labelled.labeled / labelled.seconds, 2) if labelled.seconds else None,
            "gates": {d.question: {"decision": d.decision, "reason": d.reason} for d in decisions},
            "kappa": {q: b.get("kappa") for q, b in calibration["questions"].items()}, "decided": 0}
    for d in decisions:
        q = calibration["questions"][d.question]
        say(f"LLM tier, {d.question}: on {q['n']} reviewed items kappa {_f(q['kappa'])}, accuracy "
            f"{_f(q['accuracy'])}; gate {d.decision.upper()} - {d.reason}",
            style="green" if d.decision == "pass" else "red")
    if any(d.decision == "pass" for d in decisions):
        say("the LLM's gate opened, but routing the student's undecided items to it is not built yet: they stay with "
            "the humans", style="yellow")
    calibrate(config, result.labeler)  # calibration.json describes the tier that decided
    return tier


def _human_responses(config: ProjectConfig) -> tuple[int, int]:
    """Submitted responses (one per record and annotator) and the annotators who gave them, as synced."""
    from ..rundir import ANNOTATIONS, read_table

    synced = read_table(config.run_path, ANNOTATIONS, required=False, columns=["item_id", "annotator", "status"])
    if synced is None:
        return 0, 0
    submitted = synced[synced["status"] == "submitted"].drop_duplicates(["item_id", "annotator"])
    return len(submitted), int(submitted["annotator"].nunique())


def _loop_section(config: ProjectConfig, result: "LoopResult", scores: dict[str, "HeldBackScore"],
                  curated_rows: int, tiers: list[dict[str, Any]]) -> dict[str, Any]:
    from ..review.cost import cost_section

    few_shot = 0
    if config.llm is not None and config.llm.few_shot_path is not None and config.llm.few_shot_path.is_file():
        few_shot = sum(1 for line in config.llm.few_shot_path.read_text().splitlines() if line.strip())
    human_items = len(result.reviewed)
    responses, annotators = _human_responses(config)
    return {
        "human_labels": {"items": human_items, "responses": responses, "annotators": annotators,
                         "few_shot_examples": few_shot},
        "items": result.items, "curated_items": curated_rows,
        "multiplier": curated_rows / human_items if human_items else None,
        "tiers": tiers,
        "held_back": {q: s.as_dict() for q, s in scores.items()},
        "alpha_on": f"the {human_items} items the humans reviewed (every batch: selected, honeypot and audit items)",
        "rounds": [{**r.as_dict(), "gates": {q: d.decision for q, d in r.gates.items()}} for r in result.rounds],
        "audit": result.audit,
        "cost": cost_section(config, tiers, curated_rows, human_items),
    }


def run_demo(config: ProjectConfig, *, label: bool = True, repo_id: Optional[str] = None) -> dict[str, float]:
    """Run the main job, printing each stage's time; returns the timings.

    The curated dataset goes to a local folder (`hub.local_dir` or `<run dir>/curated`), or to the Hub when a
    `repo_id` is given. Any known failure ends as one `CurateError` message (the command prints it).

    Raises:
        PromiseBrokenError: the labels accepted without a human measured below their promise on the held-back labels.
    """
    from pipelines import embed_items, label_items, prefer_items

    from ..argilla_io.connection import connect
    from ..argilla_io.replay import ensure_user
    from ..curated import build_curated, push
    from ..ledger import verify
    from ..items import load_items, recorded_labels
    from ..review.loop import run_loop, score_held_back

    config = held_back(config)
    timings: dict[str, float] = {}
    with stage("Argilla server", timings):
        client, info = connect()
        say(f"{'external' if info.external else 'embedded'} server at {info.api_url}"
            f"{'' if info.external else (' (started)' if info.started else ' (reused)')}")
    recorded = recorded_labels(config, load_items(config))
    if recorded.empty:
        raise ConfigError(f"{config.source_path}: the data records no human answer to replay as reviewers "
                          "(`human_labels`, or `preference.human_preferred` for pairs), so the demo has no humans")
    if label and config.llm is not None and config.triage.labeler in ("llm", "ensemble"):
        if config.task == TaskKind.preference:
            with stage("LLM judge (the judge is the labeler that decides, so it rates every pair)", timings), \
                    progress_bar("Judging", "ratings") as update:
                judged = prefer_items(config, progress=update)
            say(f"{judged.report['ok']} pairs judged, {judged.report['failed']} failed (each with its reason in "
                f"{judged.path.name})")
        else:
            with stage("LLM labels (the LLM is the labeler that decides, so it labels the pool)", timings), \
                    progress_bar("Labelling", "items") as update:
                labelled = label_items(config, progress=update)
            say(f"{labelled.ok} ok, {labelled.failed} failed ({labelled.skipped} already labelled)")
    with stage("Embeddings", timings), progress_bar("Embedding", "texts") as update:
        embed_items(config, progress=update)
    humans = ArgillaHumans(client, recorded)
    with stage(f"Review rounds (1 + {config.selection.rounds}) with active learning, honeypots, suppression and "
               f"the audit; the {config.triage.labeler} retrained, calibrated, gated and triaged after each", timings):
        result = run_loop(config, humans, on_round=lambda done: _describe_round(config, done))
        if result.audit:
            for question, q in result.audit.get("questions", {}).items():
                say(f"audit {question}: {q['errors']} wrong of {q['audited']} audited - {q.get('verdict')}")
    labeler_seconds = sum(r.seconds.get("labeler", 0.0) for r in result.rounds)
    counts = result.triage.routes.drop_duplicates("item_id")
    unreviewed_auto = int(((counts["route"] == "auto") & ~counts["item_id"].isin(result.reviewed)).sum())
    tiers = [{"labeler": result.labeler, "decided": unreviewed_auto, "seconds": round(labeler_seconds, 1),
              "gates": {q: {"decision": "pass" if state.open else "fail", "reason": state.reason}
                        for q, state in result.triage.states.items()}}]
    if label and config.llm is not None and result.labeler == "student":
        with stage(f"LLM tier: label {LLM_TIER_ITEMS} gold items, calibrate and gate", timings):
            tiers.append(_llm_tier(config, result))
    earlier = sum(r.seconds.get("humans", 0.0) for r in result.rounds if r.resumed)
    tiers.append({"labeler": "humans", "decided": len(result.reviewed), "seconds": round(earlier + humans.seconds, 1),
                  "responses": _human_responses(config)[0]})
    with stage("Score the labels no human gave against the held-back labels", timings):
        scores = score_held_back(config, result)
        broken = _say_scores(scores)
    with stage("Report", timings):
        curated_rows = sum(len(split) for split in build_curated(config).splits.values())
        loop = _loop_section(config, result, scores, curated_rows, tiers)
        report, report_path = report_with_sections(config, extra={"loop": loop})
        print_report(report)
        for line in _describe_review(report):
            say(line)
        say(f"report -> {report_path}")
    with stage("Push curated splits", timings):
        pushed = push(config, repo_id=repo_id)
    say(f"curated dataset -> {pushed.location} (" + ", ".join(f"{split} {n}" for split, n in pushed.rows.items())
        + "; excluded " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in pushed.excluded.items() if v) or "none")
        + ")")
    chain = verify(config.run_path)
    say(f"decision ledger: {chain.describe()} (the card carries head {pushed.ledger_head})")

    username, password = reviewer_login(config)
    ensure_user(client, username, config.argilla.workspace, password=password)
    console.rule("What the loop did")
    say(f"human labels: {loop['human_labels']['items']} items reviewed ({loop['human_labels']['responses']} "
        f"responses by {loop['human_labels']['annotators']} recorded annotators) of {result.items}", style="bold")
    multiplier = loop["multiplier"]
    say(f"amplification: {curated_rows} items with a curated label / {len(result.reviewed)} a human labelled = "
        f"{'n/a' if multiplier is None else f'{multiplier:.2f}x'}", style="bold")
    for question, score in scores.items():
        say(f"measured precision of the labels no human gave ({question}, {score.overall['n']} held-back items): "
            + (", ".join(f"{label} {_f(f['precision'])} [{_f(f['wilson_low'])}, {_f(f['wilson_high'])}] vs promise "
                         f"{f['promise']}" for label, f in score.per_label.items()) or "none accepted"),
            style="red" if score.broken else "bold green" if score.overall["n"] else "bold")
    cost = loop.get("cost")
    if cost and cost["per_curated_label"] is not None:
        per_tier = ", ".join(f"{t['tier']} {_money(t['per_label'])}" for t in cost["tiers"])
        say(f"cost per curated label: {_money(cost['per_curated_label'])} {cost['currency']} ({per_tier}) vs "
            f"{_money(cost['all_human_per_label'])} all-human at the same prices", style="bold")
    standing = report.sections.get("qualification")
    if standing:
        say("qualification (" + f"{standing['min_agreement']:.0%} on {standing['batch']} gold answers): " + ", ".join(
            f"{r['annotator']} {r['status']} {_f(r['accuracy'])}" for r in standing["reviewers"]))
    console.rule("Review it yourself")
    say(f"Argilla UI: {info.api_url}  (dataset {config.argilla.dataset}, workspace {config.argilla.workspace})")
    say(f"reviewer login: {username} / {password}   (owner credentials: "
        f"{'ARGILLA_API_KEY' if info.external else str(info.home) + '/credentials.json'})")
    say("times: " + ", ".join(f"{name.split(' (')[0].split(':')[0]} {seconds:.1f}s"
                              for name, seconds in timings.items()))
    if broken:
        raise PromiseBrokenError("the promise did not hold: " + "; ".join(broken) + f" (see {report_path})")
    return timings


def _say_scores(scores: dict[str, "HeldBackScore"]) -> list[str]:
    """Print each question's held-back precision; returns the broken promises, in words."""
    broken = []
    for question, score in scores.items():
        overall = score.overall
        say(f"{question}: {overall['auto']} items accepted without a human; {overall['n']} of them have a held-back "
            f"majority ({overall['no_majority']} without one are not scored)")
        for label, f in score.per_label.items():
            confirmed = f["promise"] is not None and f["wilson_low"] is not None and f["wilson_low"] >= f["promise"]
            say(f"  {label}: precision {_f(f['precision'])} on {f['n']} (95% Wilson [{_f(f['wilson_low'])}, "
                f"{_f(f['wilson_high'])}]), promise {f['promise']}"
                + (" - held, with its lower bound above the promise" if confirmed else ""),
                style="red" if label in score.broken else "green")
        if "promise" in overall and overall["promise"] is not None:
            say(f"  pooled: precision {_f(overall['precision'])} (promise {overall['promise']})",
                style="red" if score.broken else "green")
        broken += [f"{question} {label}: measured "
                   f"{_f((score.per_label.get(label) or overall)['precision'])} < promise "
                   f"{(score.per_label.get(label) or overall).get('promise')}" for label in score.broken]
    return broken


@command(app, "demo")
def demo_command(
    config: Path = typer.Option(Path("configs/convabuse.yaml"), help="Demo project config."),
    label: bool = typer.Option(True, help="Also measure the local LLM as the next tier (calibrated and gated)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N items (quick look)."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Also push the curated splits to this Hub repo."),
) -> None:
    """The main job on the embedded defaults: server, embeddings, review rounds chosen by active learning (honeypots,
    suppressed suggestions, audit), the recorded annotators replayed for the reviewed items only, the student
    retrained, calibrated, gated and triaged, the labels no human gave scored on held-back labels, report, push."""
    project = load(config)
    if limit is not None:
        project = project.model_copy(update={"data": project.data.model_copy(update={"limit": limit})})
    run_demo(project, label=label, repo_id=repo_id)
