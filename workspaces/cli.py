"""The `curate` command line: one command per stage of the loop (config -> label -> publish -> sync -> report -> push)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._console import console, fail, progress_bar
from .agreement import AgreementError, krippendorff_alpha, read_tidy_table
from .config import AlphaLevel, ConfigError, ProjectConfig, load_config

__all__ = ["app"]

app = typer.Typer(
    name="curate",
    help="Human-calibrated LLM labeling on Argilla + Distilabel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
server_app = typer.Typer(help="The embedded Argilla server (or the one ARGILLA_API_URL names).", no_args_is_help=True)
app.add_typer(server_app, name="server")

ConfigArg = typer.Argument(..., exists=False, help="Project config YAML (see configs/).")


def _load(path: Path) -> ProjectConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _client():
    from .connection import ConnectionFailed, connect

    try:
        with console.status("Connecting to Argilla..."):
            return connect()
    except ConnectionFailed as exc:
        raise fail(str(exc)) from None


# ----------------------------------------------------------------------------------------------------------- server
@server_app.command("up")
def server_up() -> None:
    """Start the embedded Argilla server (reused if already running)."""
    from .server import EmbeddedServer, ServerError, external_server

    external = external_server()
    if external is not None:
        console.print(f"ARGILLA_API_URL is set: using the server at [bold]{external.api_url}[/]; nothing to start.")
        return
    server = EmbeddedServer()
    try:
        with console.status("Starting the embedded Argilla server (first run installs it: a few minutes)..."):
            info = server.up()
    except ServerError as exc:
        raise fail(str(exc)) from None
    verb = "started" if info.started else "already running"
    console.print(f"Argilla server {verb} at [bold]{info.api_url}[/]  (owner: {info.owner_username} / "
                  f"{info.owner_password}; home {server.home})")


@server_app.command("down")
def server_down() -> None:
    """Stop the embedded server processes that `curate server up` started (nothing else)."""
    from .server import EmbeddedServer

    stopped = EmbeddedServer().down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@server_app.command("status")
def server_status() -> None:
    """Show whether the server is running, its URL and PIDs."""
    from .server import EmbeddedServer, external_server

    external = external_server()
    if external is not None:
        console.print(f"external server (ARGILLA_API_URL): {external.api_url}")
        return
    status = EmbeddedServer().status()
    state = "[green]running[/]" if status.running else "[red]not running[/]"
    pids = ", ".join(f"{name} {pid}" for name, pid in status.pids.items()) or "none"
    console.print(f"embedded server {state} at {status.url}\nprocesses: {pids}\nhome: {status.home}\n"
                  f"logs: {status.logs}")
    if not status.running:
        raise typer.Exit(3)


# -------------------------------------------------------------------------------------------------------- publish
@app.command("publish")
def publish_command(
    config: Path = ConfigArg,
    labels: Optional[Path] = typer.Option(None, help="LLM labels parquet (default: <run dir>/labels.parquet if any)."),
    embeddings: Optional[Path] = typer.Option(None, help="Item vectors parquet (default: <run dir>/embeddings.parquet)."),
) -> None:
    """Create/update the Argilla dataset from CONFIG and log its items (idempotent: record ids = item ids).

    A `task: preference` config publishes its preference pairs (`curate prefer` output) instead.
    """
    from .config import TaskKind
    from .preference import publish_preferences
    from .publish import PublishError, publish

    project = _load(config)
    client, _ = _client()
    try:
        with progress_bar("Publishing", "records") as update:
            if project.task == TaskKind.preference:
                result = publish_preferences(project, client, progress=update)
            else:
                result = publish(project, client, labels_path=labels, embeddings_path=embeddings, progress=update)
    except (ConfigError, PublishError) as exc:
        raise fail(str(exc)) from None
    verb = "created" if result.created else "updated"
    console.print(f"{verb} dataset [bold]{result.dataset}[/] in workspace {result.workspace}: {result.records} records, "
                  f"{result.suggestions} suggestions{', vectors' if result.vectors else ''}\n{result.url}")


# ----------------------------------------------------------------------------------------------------------- sync
@app.command("sync")
def sync_command(config: Path = ConfigArg) -> None:
    """Pull every response (submitted, draft, discarded) into <run dir>/annotations.parquet."""
    from .sync import SyncError, sync

    project = _load(config)
    client, _ = _client()
    try:
        with progress_bar("Syncing", "records") as update:
            result = sync(project, client, progress=update)
    except SyncError as exc:
        raise fail(str(exc)) from None
    counts = ", ".join(f"{status} {n}" for status, n in sorted(result.by_status.items())) or "none"
    console.print(f"{result.responses} responses on {result.records} records ({counts}) -> {result.path}")


# --------------------------------------------------------------------------------------------------------- report
def print_report(report: dict) -> None:
    """The report's alpha and per-annotator tables on the console."""
    table = Table(title="Krippendorff's alpha (submitted responses)")
    for column in ("question", "level", "alpha", "95% CI", "interval", "units", "annotators", "pairable"):
        table.add_column(column)
    for name, q in report["questions"].items():
        ci = "n/a" if q["ci95"] is None else f"[{q['ci95'][0]:.3f}, {q['ci95'][1]:.3f}]"
        alpha = "n/a" if q["alpha"] is None else f"{q['alpha']:.3f}"
        interval = "" if q["alpha_interval"] is None else f"{q['alpha_interval']:.3f}"
        table.add_row(name, q["level"], alpha, ci, interval, str(q["units"]), str(q["annotators"]), str(q["pairable"]))
    console.print(table)
    for name, annotators in report["annotators"].items():
        per = Table(title=f"{name}: agreement with the leave-one-out majority")
        for column in ("annotator", "units", "compared", "agreement"):
            per.add_column(column)
        for a in annotators:
            per.add_row(a["annotator"], str(a["units"]), str(a["compared"]),
                        "n/a" if a["agreement"] is None else f"{a['agreement']:.3f}")
        console.print(per)
    for name, j in (report.get("judge") or {}).items():
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        console.print(f"judge on [bold]{name}[/]: {j['ok']} ok / {j['failed']} failed; vs human majority on {j['n']} "
                      f"items: accuracy {fmt(j['accuracy'])}, Cohen's kappa {fmt(j['cohen_kappa'])}, "
                      f"alpha with judge {fmt(j['alpha_with_judge'])}")


@app.command("report")
def report_command(
    config: Path = ConfigArg,
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CI (0: none)."),
) -> None:
    """Agreement report from the synced table -> <run dir>/report.json and report.md."""
    from .report import write_report
    from .sync import SyncError

    project = _load(config)
    try:
        with console.status("Computing agreement..."):
            report, path = write_report(project, bootstrap=bootstrap)
    except (SyncError, AgreementError) as exc:
        raise fail(str(exc)) from None
    print_report(report)
    console.print(f"report -> {path} and {path.with_suffix('.md')}")


# ------------------------------------------------------------------------------------------------------ agreement
@app.command("agreement")
def agreement_command(
    file: Path = typer.Argument(..., help="csv / jsonl / parquet with columns unit, annotator, value."),
    level: AlphaLevel = typer.Option(AlphaLevel.nominal, "--level", help="Level of measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CI (0: none)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Krippendorff's alpha for any tidy table (missing values are absent rows)."""
    try:
        result = krippendorff_alpha(read_tidy_table(file), level, bootstrap=bootstrap, seed=seed)
    except AgreementError as exc:
        raise fail(str(exc)) from None
    payload = result.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(payload))
        return
    ci = "n/a" if result.ci95 is None else f"[{result.ci95[0]:.3f}, {result.ci95[1]:.3f}]"
    alpha = "n/a" if result.alpha is None else f"{result.alpha:.4f}"
    console.print(f"alpha ({result.level.value}) = [bold]{alpha}[/]  95% CI {ci}  units {result.units}, "
                  f"annotators {result.annotators}, pairable values {result.pairable}")


# --------------------------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo_command(
    config: Path = typer.Option(Path("configs/convabuse_demo.yaml"), help="Demo project config."),
    label: bool = typer.Option(True, help="Label the items with the local LLM first (suggestions)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N items (quick look)."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Also push the curated splits to this Hub repo."),
) -> None:
    """The whole loop on the embedded defaults: server, LLM labels, publish, real annotators, sync, report, push."""
    from .demo import run_demo

    project = _load(config)
    if limit is not None:
        project = project.model_copy(update={"data": project.data.model_copy(update={"limit": limit})})
    run_demo(project, label=label, repo_id=repo_id)


# --- commands registered by other modules (one line each: app.command("name")(function)) ---
from .push import push_command  # noqa: E402
app.command("push")(push_command)
from pipelines.cli import embed_command, label_command, prefer_command  # noqa: E402
app.command("label")(label_command)
app.command("prefer")(prefer_command)
app.command("embed")(embed_command)
# --- end registered commands ---
