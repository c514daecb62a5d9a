"""`curate student`, `calibrate`, `gate`, `triage`, `drift`: how far a labeler is trusted, and what it may label
alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import typer

from ..errors import GateClosedError
from ._app import ConfigArg, app, command, load
from .console import console, print_table, say, warn

if TYPE_CHECKING:
    from ..config import ProjectConfig

LabelerOption = typer.Option(None, "--labeler", help="llm, student or ensemble (default: triage.labeler).")


def _f(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def train_student(project: "ProjectConfig", *, folds: int = 5, seed: int = 0) -> Iterator[tuple[str, Any]]:
    """Train the student on each labeler question's human reference: yields (question, `Reference`, `StudentRun`)."""
    from pipelines.student import run_student

    from ..judge import human_reference, human_votes, labeler_questions

    votes = human_votes(project)
    for question in labeler_questions(project):
        reference = human_reference(project, question, votes=votes)
        with console.status(f"Training the student on {len(reference)} reference labels of {question}..."):
            run = run_student(project, reference.labels, question, folds=folds, seed=seed)
        yield question, reference, run


@command(app, "student")
def student_command(
    config: Path = ConfigArg,
    folds: int = typer.Option(5, help="Cross-validation folds for the out-of-fold scores of the training items."),
    seed: int = typer.Option(0, help="Seed of the folds and the classifier."),
) -> None:
    """Train the student (logistic regression on the embeddings; one per label for tags) on the human reference;
    label every item."""
    for question, reference, run in train_student(load(config), folds=folds, seed=seed):
        sources = ", ".join(f"{k} {v}" for k, v in reference.counts().items())
        say(f"{question}: trained on {run.trained_on} reference items ({sources}), labeled "
            f"{int((run.labels['status'] == 'ok').sum())} items in {run.seconds:.1f}s -> {run.path}")


@command(app, "calibrate")
def calibrate_command(config: Path = ConfigArg, labeler: Optional[str] = LabelerOption) -> None:
    """Measure a labeler on the human reference and fit its confidence thresholds -> calibration.json / .md.

    Exits 1 when a question has no reference item the labeler labeled (nothing was measured).
    """
    from ..judge import calibrate, require_reference

    project = load(config)
    with console.status("Calibrating..."):
        result = calibrate(project, labeler or project.triage.labeler)
    require_reference(result)
    for question, q in result["questions"].items():
        print_table(f"{question}: {result['labeler']} vs the human reference ({q['n']} items; "
                    + ", ".join(f"{k} {v}" for k, v in q["reference"]["sources"].items()) + ")",
                    ["accuracy", "Cohen's kappa", "alpha", "ECE", "Brier", "AUROC"],
                    [[_f(q["accuracy"]), _f(q["kappa"]), _f(q["alpha"]), _f(q["ece"]), _f(q["brier"]),
                      _f(q["auroc"])]])
        print_table(f"{question}: thresholds (cross-fitted)",
                    ["target precision", "threshold", "coverage", "held-out precision", "95% lower bound"],
                    [[f"{t['target_precision']:.2f}", _f(t["threshold"]), _f(t["coverage"]), _f(t["precision"]),
                      _f(t["precision_lower"])] for t in q["thresholds"]])
    say(f"calibration -> {project.run_path / 'calibration.json'} and calibration.md")


def _print_decisions(decisions) -> None:
    for d in decisions:
        say(f"gate {d.question}: {d.decision.upper()} ({d.id}) - {d.reason}",
            style="green" if d.decision == "pass" else "red")


@command(app, "gate")
def gate_command(config: Path = ConfigArg, labeler: Optional[str] = LabelerOption) -> None:
    """Decide whether the calibrated labeler may label alone; append the decision to gate_history.jsonl.

    Exits 7 when the gate fails (the reason is printed and recorded).
    """
    from ..judge import run_gate

    project = load(config)
    decisions = run_gate(project, labeler)
    _print_decisions(decisions)
    failed = [d for d in decisions if d.decision != "pass"]
    if failed:
        raise GateClosedError(f"the gate refused the labeler for {', '.join(d.question for d in failed)}: nothing "
                              "will be accepted without human review")


@command(app, "triage")
def triage_command(
    config: Path = ConfigArg,
    labeler: Optional[str] = LabelerOption,
    calibrate_first: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                         help="Calibrate and run the gate before routing."),
) -> None:
    """Route every item: auto (gate open, confident), audit (a random share of auto), review -> routes.parquet.

    Runs calibrate and the gate first (and drift when the labeler changed since the last pass). Under a failed gate
    everything goes to review; that is said, and the command still exits 0.
    """
    from ..judge import calibrate, history, labeler_questions, load_labeler, run_drift, run_gate
    from ..review.triage import triage

    project = load(config)
    kind = labeler or project.triage.labeler
    last_pass = {e.question: e for e in history(project) if e.decision == "pass"}
    changed = [q for q in labeler_questions(project) if q in last_pass and last_pass[q].identity_key
               != load_labeler(project, last_pass[q].labeler_kind or kind, q).identity_key]
    if changed:  # the labeler changed since its last pass: check it on the anchor first
        for d in run_drift(project):
            say(f"drift {d.question}: {d.reason}")
    if calibrate_first:
        with console.status("Calibrating..."):
            calibrate(project, kind)
        _print_decisions(run_gate(project, kind))
    result = triage(project, kind)
    print_table(f"{project.name}: routes ({kind})", ["auto", "audit", "review"],
                [[str(result.counts["auto"]), str(result.counts["audit"]), str(result.counts["review"])]])
    if not result.gate_open:
        closed = {q: s.reason for q, s in result.states.items() if not s.open}
        warn("gate closed: every item goes to human review (" + "; ".join(f"{q}: {r}" for q, r in closed.items())
             + ")")
    say(f"routes -> {project.run_path / 'routes.parquet'}")


@command(app, "drift")
def drift_command(config: Path = ConfigArg) -> None:
    """Re-score the labeler on the anchor of its last pass; append a DRIFT / OK line to the gate history."""
    from ..judge import run_drift

    project = load(config)
    for d in run_drift(project):
        say(f"{d.question}: {d.reason}", style="red" if d.decision == "closed" else "green")
