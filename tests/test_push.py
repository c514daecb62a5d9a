"""`curate push`: curated splits with provenance, the dataset card, and publishing them to a folder or to the Hub.

Hub tests run the real `datasets` / `huggingface_hub` client code against tests/support/hub_server.py (started by the
`hub_server` fixture in conftest.py, which points HF_ENDPOINT at it before anything imports those libraries).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import load_dataset
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from typer.testing import CliRunner

from workspaces.agreement import read_report, write_report
from workspaces.cli import app
from workspaces.errors import DataLossError, RunFileError
from workspaces.config import ProjectConfig, QuestionConfig, load_config
from workspaces.curated import CurationError, build_curated
from workspaces.items import load_items, recorded_labels
from workspaces.curated import PushError, export_argilla_dataset, push
from workspaces.curated.push import MARKER

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"
N_ITEMS = 240
MODEL, PROMPT_HASH = "SmolLM2-135M-Instruct.Q4_1", "p7c3e1a9b2d4"
# ---- a run directory built by hand from the vendored ConvAbuse sample ------------------------------------------

def _majority(values: list[str]) -> str | None:
    counts = pd.Series(values).value_counts()
    return counts.index[0] if counts.iloc[0] * 2 > len(values) else None


def _make_run(tmp_path: Path, **hub: Any) -> tuple[ProjectConfig, dict[str, Any]]:
    """A config + run dir: annotations.parquet from the recorded labels (reshaped per group), labels.parquet,
    report.json and a gold id file. Returns the config and the item ids of each group."""
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    base = load_config(DEMO)
    config = base.model_copy(update={"run_dir": run, "data": base.data.model_copy(update={"limit": N_ITEMS})})
    items = load_items(config)
    recorded = recorded_labels(config, items)
    ids = items["item_id"].tolist()
    is_abusive = recorded[recorded["question"] == "is_abusive"].groupby("item_id")["value"].agg(list)
    unanimous = [i for i in ids[60:] if len(set(is_abusive[i])) == 1]
    groups = {
        "single": ids[0:10], "llm_auto": ids[10:16], "failed_llm": ids[16:18], "unlabeled": ids[18:20],
        "reviewed": ids[20:30], "discarded": ids[30:32], "drafts_only": ids[32:34], "forced_tie": ids[34:35],
        "gold": unanimous[:6],
    }
    rows = []
    for item_id, frame in recorded.groupby("item_id", sort=False):
        annotators = list(dict.fromkeys(frame["annotator"]))
        for n, (_, row) in enumerate(frame.iterrows()):
            status, value = "submitted", row["value"]
            first = annotators.index(row["annotator"]) == 0
            if item_id in groups["single"] and not first:
                continue
            if item_id in groups["llm_auto"] + groups["failed_llm"] + groups["unlabeled"]:
                continue
            if item_id in groups["discarded"] and first:
                status = "discarded"
            if item_id in groups["drafts_only"]:
                status = "draft"
            if item_id in groups["forced_tie"]:
                if annotators.index(row["annotator"]) > 1:
                    continue
                if row["question"] == "is_abusive":
                    value = "yes" if first else "no"
            rows.append({"record_id": f"rec-{item_id}", "item_id": item_id, "question": row["question"],
                         "annotator": row["annotator"].lower(), "value": str(value), "status": status,
                         "updated_at": pd.Timestamp("2024-05-01T10:00:00Z") + pd.Timedelta(minutes=n)})
    pd.DataFrame(rows).to_parquet(run / "annotations.parquet")

    labels = []
    for n, item_id in enumerate(groups["llm_auto"] + groups["failed_llm"] + groups["reviewed"]):
        failed = item_id in groups["failed_llm"]
        label = "yes" if n % 2 else "no"
        labels.append({"item_id": item_id, "question": "is_abusive", "label": None if failed else label,
                       "confidence": None if failed else 0.5 + n / 100,
                       "probabilities": None if failed else json.dumps({label: 0.8, "no" if n % 2 else "yes": 0.2}),
                       "model": MODEL, "prompt_hash": PROMPT_HASH, "raw_output": "{}",
                       "status": "failed" if failed else "ok", "error": "timeout" if failed else None})
    pd.DataFrame(labels).to_parquet(run / "labels.parquet")
    write_report(config, bootstrap=100)  # the report as `curate report` writes it
    gold_file = tmp_path / "gold_ids.txt"
    gold_file.write_text("# gold items\n" + "\n".join(groups["gold"]) + "\n")
    config = config.model_copy(update={"hub": config.hub.model_copy(update={"gold_ids_path": gold_file, **hub})})
    submitted = pd.DataFrame(rows)
    submitted = submitted[submitted["status"] == "submitted"]
    return config, {"ids": ids, "groups": groups, "submitted": submitted}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectConfig, dict[str, Any]]:
    return _make_run(tmp_path_factory.mktemp("curation"))


def _all_rows(curated) -> pd.DataFrame:
    return pd.concat(curated.splits.values()).set_index("item_id")


# ---- provenance, exclusion, splits --------------------------------------------------------------------------------

def test_sources_follow_the_evidence(run) -> None:
    config, info = run
    groups = info["groups"]
    curated = build_curated(config)
    rows = _all_rows(curated)
    assert set(rows.loc[groups["single"], "source"]) == {"human-single"}
    assert (rows.loc[groups["single"], "n_annotators"] == 1).all()
    # LLM labels no human reviewed, with no triage and no gate: never published, counted as unreviewed
    assert not set(groups["llm_auto"]) & set(rows.index)
    assert curated.excluded["unreviewed"] == len(groups["llm_auto"])
    assert not set(rows["source"]) & {"llm-auto", "auto-accepted", "unverified"}
    reviewed = rows.loc[[i for i in groups["reviewed"] if i in rows.index]]
    assert set(reviewed["source"]) == {"llm-reviewed"}
    assert (reviewed["is_abusive_llm_overridden"] == (reviewed["is_abusive_llm_label"] != reviewed["is_abusive"])).all()
    assert reviewed["is_abusive_llm_overridden"].any(), "some LLM labels in the sample disagree with the reviewers"
    assert set(rows.loc[groups["gold"], "source"]) == {"gold"}
    consensus = rows[rows["source"] == "human-consensus"]
    assert len(consensus) > 100 and (consensus["n_annotators"] >= 2).all()
    assert set(rows["guideline_hash"]) == {config.guideline_hash}
    # discarded and draft responses are not labels
    for item_id in groups["discarded"]:
        assert len(rows.loc[item_id, "is_abusive_annotators"]) == len(
            info["submitted"].query("item_id == @item_id and question == 'is_abusive'"))
    assert not set(groups["drafts_only"] + groups["unlabeled"] + groups["failed_llm"]) & set(rows.index)


def test_final_labels_agreement_and_rating_median(run) -> None:
    config, info = run
    rows = _all_rows(build_curated(config))
    submitted = info["submitted"]
    checked = 0
    for item_id in rows.index[rows["source"] == "human-consensus"][:40]:
        mine = submitted[submitted["item_id"] == item_id]
        labels = mine[mine["question"] == "is_abusive"]["value"].tolist()
        ratings = sorted(int(v) for v in mine[mine["question"] == "severity"]["value"])
        row = rows.loc[item_id]
        assert row["is_abusive"] == _majority(labels)
        assert row["is_abusive_agreement"] == pytest.approx(labels.count(row["is_abusive"]) / len(labels))
        assert row["severity"] == ratings[(len(ratings) - 1) // 2]
        assert sorted(row["is_abusive_values"]) == sorted(labels)
        checked += 1
    assert checked == 40
    stamped = rows[rows["source"] != "gold"]
    assert stamped["first_annotated_at"].str.startswith("2024-05-01T10:").all()
    assert (stamped["first_annotated_at"] <= stamped["last_annotated_at"]).all()


def test_no_majority_items_are_excluded_and_counted(run, tmp_path: Path) -> None:
    config, info = run
    groups, submitted = info["groups"], info["submitted"]
    curated = build_curated(config)
    labels = submitted[submitted["question"] == "is_abusive"].groupby("item_id")["value"].agg(list)
    expected = {i for i, values in labels.items() if _majority(values) is None and i not in groups["gold"]}
    assert groups["forced_tie"][0] in expected
    assert curated.excluded["no_majority"] == len(expected) == curated.excluded_by_question["is_abusive"]
    assert curated.excluded["unlabeled"] == len(groups["unlabeled"] + groups["failed_llm"] + groups["drafts_only"])
    assert not expected & set(_all_rows(curated).index)
    kept = build_curated(config.model_copy(update={"hub": config.hub.model_copy(
        update={"exclude_no_majority": False})}))
    rows = _all_rows(kept)
    assert expected <= set(rows.index) and rows.loc[sorted(expected), "is_abusive"].isna().all()
    assert kept.excluded["no_majority"] == 0


def test_gold_never_leaks_and_splits_are_stratified_and_deterministic(run) -> None:
    config, info = run
    gold = set(info["groups"]["gold"])
    curated = build_curated(config)
    assert set(curated.splits) == {"train", "validation", "test", "gold"}
    assert set(curated.splits["gold"]["item_id"]) == gold
    for name in ("train", "validation", "test"):
        assert not gold & set(curated.splits[name]["item_id"])
        assert "gold" not in set(curated.splits[name]["source"])
    ids = [i for name in ("train", "validation", "test") for i in curated.splits[name]["item_id"]]
    assert len(ids) == len(set(ids))
    n = len(ids)
    assert abs(len(curated.splits["test"]) - round(n * config.hub.test_size)) <= 1
    assert abs(len(curated.splits["validation"]) - round(n * config.hub.validation_size)) <= 1
    share = {name: (curated.splits[name]["is_abusive"] == "yes").mean() for name in ("train", "validation", "test")}
    overall = sum((curated.splits[s]["is_abusive"] == "yes").sum() for s in share) / n
    yes_total = round(overall * n)
    assert abs((curated.splits["test"]["is_abusive"] == "yes").sum() - yes_total * config.hub.test_size) <= 1
    assert all(abs(v - overall) < 0.05 for v in share.values()), share
    assert not curated.notes
    again = build_curated(config)
    for name in curated.splits:
        pd.testing.assert_frame_equal(curated.splits[name], again.splits[name])
    other = build_curated(config.model_copy(update={"hub": config.hub.model_copy(update={"seed": 7})}))
    assert set(other.splits["test"]["item_id"]) != set(curated.splits["test"]["item_id"])
    assert set(other.splits["gold"]["item_id"]) == gold


def test_without_gold_file_there_is_no_gold_split(run) -> None:
    config, _ = run
    curated = build_curated(config.model_copy(update={"hub": config.hub.model_copy(update={"gold_ids_path": None})}))
    assert "gold" not in curated.splits
    assert "gold" not in set(pd.concat(curated.splits.values())["source"])


def test_free_text_answers_are_kept_but_never_voted_on(tmp_path: Path) -> None:
    config, info = _make_run(tmp_path)
    config = config.model_copy(update={"questions": [*config.questions,
                                                     QuestionConfig(name="comment", kind="text")]})
    annotations = pd.read_parquet(config.run_path / "annotations.parquet")
    first = annotations.drop_duplicates("item_id").head(50).assign(question="comment")
    first["value"] = [f"note {i}" for i in range(len(first))]
    pd.concat([annotations, first]).to_parquet(config.run_path / "annotations.parquet")
    baseline = build_curated(_make_run(tmp_path / "baseline")[0])
    curated = build_curated(config)
    assert curated.rows == baseline.rows and curated.excluded == baseline.excluded
    rows = _all_rows(curated)
    commented = rows[rows["comment_values"].map(len) > 0]
    assert len(commented) > 30 and commented["comment"].isna().all() and commented["comment_source"].isna().all()
    assert commented["comment_values"].map(lambda v: v[0].startswith("note ")).all()


def test_tiny_class_falls_back_to_unstratified_with_a_note(tmp_path: Path) -> None:
    config, info = _make_run(tmp_path)
    annotations = pd.read_parquet(config.run_path / "annotations.parquet")
    yes_items = annotations.query("question == 'is_abusive' and value == 'yes'")["item_id"].unique()
    annotations = annotations[~annotations["item_id"].isin(yes_items[1:])]  # a single 'yes' item is left
    annotations.to_parquet(config.run_path / "annotations.parquet")
    (config.run_path / "labels.parquet").unlink()
    curated = build_curated(config)
    assert any("not stratified" in note for note in curated.notes)
    assert sum(curated.rows.values()) > 100


def test_missing_annotations_says_run_sync_first(tmp_path: Path) -> None:
    base = load_config(DEMO)
    config = base.model_copy(update={"run_dir": tmp_path / "empty-run"})
    with pytest.raises(RunFileError, match="curate sync"):
        build_curated(config)
    with pytest.raises(RunFileError, match="annotations.parquet"):
        push(config, to=tmp_path / "out")


def test_bad_value_in_annotations_names_the_file_and_question(tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    annotations = pd.read_parquet(config.run_path / "annotations.parquet")
    annotations.loc[annotations.index[annotations["question"] == "severity"][0], "value"] = "9"
    annotations.to_parquet(config.run_path / "annotations.parquet")
    with pytest.raises(CurationError, match=r"annotations\.parquet.*severity"):
        build_curated(config)


# ---- local folder target ---------------------------------------------------------------------------------------

def test_folder_round_trip_no_change_and_dropped_split(tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    out = tmp_path / "published"
    first = push(config, to=out)
    assert first.target == "dir" and first.changed and Path(first.location) == out.resolve()
    curated = build_curated(config)
    expected = curated.to_dataset_dict(config)
    loaded = load_dataset(str(out))
    assert set(loaded) == {"train", "validation", "test", "gold"}
    for split in expected:
        assert loaded[split].to_list() == expected[split].to_list()
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        f"{s}-00000-of-00001.parquet" for s in expected)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    again = push(config, to=out)
    assert not again.changed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    no_validation = config.model_copy(update={"hub": config.hub.model_copy(update={"validation_size": 0.0})})
    dropped = push(no_validation, to=out)
    assert dropped.changed and "validation" not in dropped.rows
    assert not (out / "data" / "validation-00000-of-00001.parquet").exists()
    assert set(load_dataset(str(out))) == {"train", "test", "gold"}
    card = (out / "README.md").read_text()
    assert "data/validation-" not in card and "| validation |" not in card


def test_default_folder_is_the_run_dir_and_refuses_foreign_folders(tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    result = push(config)
    assert Path(result.location) == (config.run_path / "curated").resolve()
    assert (config.run_path / "curated" / "README.md").is_file()
    recorded = json.loads((config.run_path / "push.json").read_text())
    assert recorded["location"] == result.location and recorded["rows"] == result.rows
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "README.md").write_text("my project\n")
    with pytest.raises(PushError, match="not written by `curate push`"):
        push(config, to=foreign)
    assert (foreign / "README.md").read_text() == "my project\n"


def test_push_never_deletes_or_overwrites_files_it_did_not_write(tmp_path: Path) -> None:
    """A folder with its own data/ (e.g. `--to .` from a project root) is refused and left byte for byte as it was."""
    config, _ = _make_run(tmp_path)
    project = tmp_path / "someone-elses-project"
    (project / "data").mkdir(parents=True)
    mine = {project / "data" / "items.parquet": b"PAR1 not ours", project / "README.md": b"# my project\n",
            project / "data" / "train-00000-of-00001.parquet": b"a file with a curated-looking name"}
    for path, data in mine.items():
        path.write_bytes(data)
    result = CliRunner().invoke(app, ["push", str(_config_file(config, tmp_path)), "--to", str(project)])
    assert result.exit_code == PushError.exit_code, result.output
    assert "not written by `curate push`" in result.output
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == mine
    # a folder an earlier push wrote is updated in place, and only the files that push wrote are ever removed
    out = tmp_path / "curated"
    push(config, to=out)
    (out / "data" / "notes.parquet").write_bytes(b"kept")
    push(config.model_copy(update={"hub": config.hub.model_copy(update={"validation_size": 0.0})}), to=out)
    assert (out / "data" / "notes.parquet").read_bytes() == b"kept"
    assert not (out / "data" / "validation-00000-of-00001.parquet").exists()


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_refuses_to_overwrite_an_output_file_the_user_changed_unless_forced(tmp_path: Path) -> None:
    """Issue 26: push keeps the sha256 of every file it wrote in its marker. Re-pushing over unchanged files is fine;
    a file the user edited since (or one push never wrote, under a name push wants) is refused, naming it, with
    exit 8 and nothing changed; `--force` replaces it. The folder is the user's to share: usual (umask) modes."""
    config, _ = _make_run(tmp_path)
    path = _config_file(config, tmp_path)
    out = tmp_path / "shared"
    train = "data/train-00000-of-00001.parquet"
    first = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])
    assert first.exit_code == 0, first.output
    pushed = _folder_bytes(out)
    written = json.loads((out / MARKER).read_text())["files"]
    assert written == {name: _sha256(out / name) for name in pushed if name != MARKER}
    assert train in written and "README.md" in written
    umask = os.umask(0o022)
    os.umask(umask)
    assert {stat.S_IMODE((out / name).stat().st_mode) for name in pushed} == {0o666 & ~umask}

    again = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])  # nothing changed: no --force needed
    assert again.exit_code == 0 and "no change" in again.output, again.output
    assert _folder_bytes(out) == pushed

    (out / train).write_bytes(b"my own corrections of the train split")
    edited = _folder_bytes(out)
    refused = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])
    assert refused.exit_code == DataLossError.exit_code == 8, refused.output
    said = " ".join(refused.output.split())
    assert f"{train} (changed since curate push wrote it)" in said and "--force" in said, said
    assert "README.md" not in said and "Traceback" not in said, "only the changed file is named"
    assert _folder_bytes(out) == edited, "nothing was changed"
    assert not [p for p in out.rglob(".*.tmp")], "no temporary file is left behind"

    forced = CliRunner().invoke(app, ["push", str(path), "--to", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert f"--force: replaced {train}" in " ".join(forced.output.split())
    assert _folder_bytes(out) == pushed, "the file push writes is back, and the marker records it"
    assert CliRunner().invoke(app, ["push", str(path), "--to", str(out)]).exit_code == 0


def test_push_names_every_file_it_would_overwrite_or_delete_and_force_never_opens_a_foreign_folder(
        tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    path = _config_file(config, tmp_path)
    no_validation = config.model_copy(update={"hub": config.hub.model_copy(update={"validation_size": 0.0})})
    out = tmp_path / "shared"
    push(no_validation, to=out)
    validation = "data/validation-00000-of-00001.parquet"
    (out / "README.md").write_text("# my own notes on this dataset\n")  # changed since push wrote it
    (out / validation).write_bytes(b"a file of mine, under a name push wants")  # never written by push
    before = _folder_bytes(out)
    with pytest.raises(DataLossError) as refused:
        push(config, to=out)
    assert "README.md (changed since curate push wrote it)" in str(refused.value)
    assert f"{validation} (not written by curate push)" in str(refused.value)
    assert _folder_bytes(out) == before
    assert push(config, to=out, force=True).changed
    assert set(load_dataset(str(out))) == {"train", "validation", "test", "gold"}
    assert "my own notes" not in (out / "README.md").read_text()

    (out / validation).write_bytes(b"my edit of the validation split")  # push would delete it: a dropped split
    with pytest.raises(DataLossError, match=f"{validation} \\(changed since curate push wrote it; it would be "
                                            "deleted\\)"):
        push(no_validation, to=out)
    assert (out / validation).read_bytes() == b"my edit of the validation split"
    assert push(no_validation, to=out, force=True).changed and not (out / validation).exists()

    fresh = tmp_path / "fresh"  # a refusal in a folder without data/ leaves no data/ behind
    push(config, to=fresh)
    shutil.rmtree(fresh / "data")
    (fresh / "README.md").write_text("mine\n")
    with pytest.raises(DataLossError, match="README.md"):
        push(config, to=fresh)
    assert sorted(p.name for p in fresh.iterdir()) == sorted([MARKER, "README.md"])

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "README.md").write_text("mine\n")
    still = CliRunner().invoke(app, ["push", str(path), "--to", str(foreign), "--force"])
    assert still.exit_code == PushError.exit_code and "not written by `curate push`" in still.output
    assert _folder_bytes(foreign) == {"README.md": b"mine\n"}, "--force never opens a folder push did not write"
    hub = CliRunner().invoke(app, ["push", str(path), "--to", "hub", "--repo-id", "me/x", "--force"])
    assert hub.exit_code == PushError.exit_code and "--force applies to a folder" in hub.output, hub.output


def test_a_file_an_older_push_listed_by_name_only_is_replaced_only_when_forced(tmp_path: Path) -> None:
    """A marker from before issue 26 lists names without hashes: a change of the user's cannot be ruled out, so a
    file whose bytes would change is refused; one that already holds push's bytes is taken over with its hash."""
    config, _ = _make_run(tmp_path)
    out = tmp_path / "older"
    push(config, to=out)
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "files": sorted(marker["files"])}))
    (out / "README.md").write_text("an older card\n")
    with pytest.raises(DataLossError, match="README.md \\(written by an older curate push that kept no checksum"):
        push(config, to=out)
    assert (out / "README.md").read_text() == "an older card\n"
    assert push(config, to=out, force=True).changed
    assert json.loads((out / MARKER).read_text())["files"] == marker["files"]
    (out / MARKER).write_text(json.dumps({**marker, "files": sorted(marker["files"])}))
    assert not push(config, to=out).changed, "files that already hold push's bytes are no conflict"
    assert json.loads((out / MARKER).read_text())["files"] == marker["files"]


def test_card_states_task_counts_agreement_judge_hashes_and_license(run, tmp_path: Path) -> None:
    config, info = run
    out = tmp_path / "card"
    result = push(config, to=out)
    card = (out / "README.md").read_text()
    header = card.split("---")[1]
    assert "license: cc-by-4.0" in header and "text-classification" in header
    assert "path: data/gold-*" in header
    for split, n in result.rows.items():
        assert f"| {split} | {n} |" in card
    assert f"| **total** | {sum(result.rows.values())} |" in card
    for source in ("human-consensus", "llm-reviewed", "gold"):
        per_split = [result.by_source[s].get(source, 0) for s in ("train", "validation", "test", "gold")]
        assert f"| `{source}` | " + " | ".join(map(str, per_split)) + f" | {sum(per_split)} |" in card
    assert "median" in card and "`yes`" in card and "Cercas Curry" in card and "CC BY 4.0" in card
    report = read_report(config)
    for table in (report.alpha_table(), report.judge_table()):
        for line in table.to_markdown()[2:]:
            assert line in card, line  # the card renders the report's own tables
    assert report.questions["severity"].alpha_interval is not None
    assert f"{report.questions['severity'].alpha_interval:.3f}" in card
    assert MODEL in card and PROMPT_HASH in card and config.guideline_hash in card
    n_annotators = info["submitted"]["annotator"].nunique()
    assert f"Human annotators with submitted responses: {n_annotators}" in card
    assert f"no majority: {result.excluded['no_majority']}" in card


def test_card_without_report_says_so(tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    (config.run_path / "report.json").unlink()
    push(config, to=tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "`report.json` is absent" in card


def _config_file(config: ProjectConfig, tmp_path: Path) -> Path:
    """`config` as a file the CLI can read."""
    raw = json.loads(config.model_dump_json(exclude={"source_path"}))
    raw["data"]["path"] = str(config.data.path)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    path = tmp_path / "project.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def test_cli_push_to_folder_and_clear_error(tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    path = _config_file(config, tmp_path)
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "") and "human-consensus" in result.output
    assert load_dataset(str(out))["gold"].num_rows == 6
    (config.run_path / "annotations.parquet").unlink()
    failed = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])
    assert failed.exit_code == RunFileError.exit_code and "curate sync" in failed.output


def test_the_card_is_built_from_the_report_curate_report_wrote(tmp_path: Path) -> None:
    """Issue 8: `curate report` writes the typed report.json; `curate push` reads it back and the card renders it."""
    config, _ = _make_run(tmp_path)
    (config.run_path / "report.json").unlink()
    path = _config_file(config, tmp_path)
    made = CliRunner().invoke(app, ["report", str(path), "--bootstrap", "50"])
    assert made.exit_code == 0, made.output
    report = read_report(config)  # the pydantic model, validated on the way back in
    assert json.loads((config.run_path / "report.json").read_text()) == report.model_dump(mode="json")
    out = tmp_path / "card-from-cli"
    pushed = CliRunner().invoke(app, ["push", str(path), "--to", str(out)])
    assert pushed.exit_code == 0, pushed.output
    card = (out / "README.md").read_text()
    assert "`report.json` is absent" not in card
    for table in (report.alpha_table(), report.judge_table()):
        for line in table.to_markdown()[2:]:
            assert line in card, line
    assert f"{report.questions['is_abusive'].alpha:.3f}" in card


def _readme_exit_code(meaning: str) -> int:
    """The exit code the README's table gives for a row whose meaning mentions `meaning`."""
    rows = [line.split("|") for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and meaning in line]
    assert len(rows) == 1, f"one README exit-table row mentions {meaning!r}"
    return int(rows[0][1])


def test_a_push_of_nothing_fails_and_writes_nothing(tmp_path: Path) -> None:
    """Issue 13: a run whose responses are all drafts curates 0 rows: push exits non-zero, it never says "updated"."""
    config, _ = _make_run(tmp_path)
    config = config.model_copy(update={"hub": config.hub.model_copy(update={"gold_ids_path": None})})
    annotations = pd.read_parquet(config.run_path / "annotations.parquet").assign(status="draft")
    annotations.to_parquet(config.run_path / "annotations.parquet")
    (config.run_path / "labels.parquet").unlink()
    out = tmp_path / "nothing"
    result = CliRunner().invoke(app, ["push", str(_config_file(config, tmp_path)), "--to", str(out)])
    assert result.exit_code == 1 == _readme_exit_code("a push of 0 rows"), result.output  # issue 26.6: it was 6
    assert "nothing to push" in result.output and "updated" not in result.output
    assert not out.exists() and not (config.run_path / "push.json").exists()


def test_private_with_a_folder_target_is_refused(tmp_path: Path) -> None:
    """Issue 13: `--private` means nothing for a folder; it is an error, not silently ignored."""
    config, _ = _make_run(tmp_path)
    out = tmp_path / "folder"
    for flag in ("--private", "--public"):
        result = CliRunner().invoke(app, ["push", str(_config_file(config, tmp_path)), "--to", str(out), flag])
        assert result.exit_code == PushError.exit_code, result.output
        assert "applies to a Hub repo" in result.output
    assert not out.exists()


# ---- Hub target (real client code against the local Hub-compatible server) -----------------------------------

def _files(hub_server, repo_id: str) -> set[str]:
    return set(hub_server.files(repo_id))


def test_hub_push_round_trip_no_op_and_dropped_split(hub_server, tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    token = hub_server.token_for("alice")
    repo = "alice/convabuse-curated"
    first = push(config, to="hub", repo_id=repo, token=token)
    assert first.target == "hub" and first.changed and first.commit == hub_server.commits(repo)[-1]
    assert first.location.endswith(f"/datasets/{repo}")
    expected = build_curated(config).to_dataset_dict(config)
    loaded = load_dataset(repo)
    assert set(loaded) == set(expected) == {"train", "validation", "test", "gold"}
    for split in expected:
        assert loaded[split].to_list() == expected[split].to_list()
    commits = hub_server.commits(repo)

    again = push(config, to="hub", repo_id=repo, token=token)
    assert not again.changed and hub_server.commits(repo) == commits and again.commit == commits[-1]

    no_validation = config.model_copy(update={"hub": config.hub.model_copy(update={"validation_size": 0.0})})
    dropped = push(no_validation, repo_id=repo, token=token)  # a repo id alone means the Hub
    assert dropped.changed and len(hub_server.commits(repo)) > len(commits)
    assert not [f for f in _files(hub_server, repo) if f.startswith("data/validation")]
    assert {f for f in _files(hub_server, repo) if f.startswith("data/")} == {
        f"data/{s}-00000-of-00001.parquet" for s in ("train", "test", "gold")}
    reloaded = load_dataset(repo)
    assert set(reloaded) == {"train", "test", "gold"}
    assert reloaded["train"].num_rows == dropped.rows["train"]
    card = hub_server.files(repo)["README.md"].decode()
    assert "validation" not in card.split("---")[1]


def test_hub_card_has_the_figures_and_no_token_anywhere(hub_server, tmp_path: Path, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    config, _ = _make_run(tmp_path)
    token = hub_server.token_for("alice")
    repo = "alice/convabuse-card"
    result = push(config, to="hub", repo_id=repo, token=token)
    card = hub_server.files(repo)["README.md"].decode()
    header = card.split("---")[1]
    assert "license: cc-by-4.0" in header and "dataset_info:" in header and "path: data/gold-*" in header
    assert read_report(config).alpha_table().to_markdown()[2] in card
    assert f"| train | {result.rows['train']} |" in card and PROMPT_HASH in card
    assert token not in card
    for path in config.run_path.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert token not in captured.out + captured.err + caplog.text
    assert any(auth == f"Bearer {token}" for _, _, auth in hub_server.requests), "the token was used"


def test_private_repo_needs_its_owners_token(hub_server, tmp_path: Path) -> None:
    config, _ = _make_run(tmp_path)
    token = hub_server.token_for("alice")
    repo = "alice/convabuse-private"
    result = push(config, to="hub", repo_id=repo, private=True, token=token)
    assert result.private is True
    assert HfApi().repo_info(repo, repo_type="dataset", token=token).private
    with pytest.raises(RepositoryNotFoundError):
        HfApi().repo_info(repo, repo_type="dataset", token=False)
    with pytest.raises(RepositoryNotFoundError):
        HfApi().repo_info(repo, repo_type="dataset", token=hub_server.token_for("bob"))
    denied = (DatasetNotFoundError, RepositoryNotFoundError)  # which one depends on what the local cache holds
    with pytest.raises(denied, match="(?i)cannot be accessed|not found"):
        load_dataset(repo, download_mode="force_redownload")
    with pytest.raises(denied):
        load_dataset(repo, token=hub_server.token_for("bob"), download_mode="force_redownload")
    assert load_dataset(repo, token=token)["gold"].num_rows == result.rows["gold"]


def test_wrong_or_missing_token_fails_clearly(hub_server, tmp_path: Path, monkeypatch) -> None:
    config, _ = _make_run(tmp_path)
    wrong = "hf_this_token_is_not_valid_42"
    with pytest.raises(PushError) as raised:
        push(config, to="hub", repo_id="alice/never-created", token=wrong)
    message = str(raised.value)
    assert "token was rejected" in message and "401" in message and wrong not in message
    assert hub_server.commits("alice/never-created") == []
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(PushError, match="token was rejected"):
        push(config, to="hub", repo_id="alice/never-created")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PushError, match="no Hugging Face token.*HF_TOKEN"):
        push(config, to="hub", repo_id="alice/never-created")
    with pytest.raises(PushError, match="may not write to bob/x"):
        push(config, to="hub", repo_id="bob/x", token=hub_server.token_for("alice"))
    with pytest.raises(PushError, match="no Hub repo id"):
        push(config, to="hub", token=hub_server.token_for("alice"))
    for path in config.run_path.rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes(), path


# ---- Argilla as the source of truth ------------------------------------------------------------------------------

def test_export_argilla_dataset_to_hub(hub_server, argilla_client, tmp_path: Path) -> None:
    from workspaces.argilla_io.publish import publish

    base = load_config(DEMO)
    config = base.model_copy(update={
        "run_dir": tmp_path / "run",
        "data": base.data.model_copy(update={"limit": 12}),
        "argilla": base.argilla.model_copy(update={"dataset": "push-export", "workspace": "tests"}),
    })
    config.run_path.mkdir(parents=True)
    publish(config, argilla_client)
    repo = "alice/convabuse-argilla"
    try:
        url = export_argilla_dataset(argilla_client, config, repo, token=hub_server.token_for("alice"))
        assert url.endswith(f"/datasets/{repo}")
        files = _files(hub_server, repo)
        settings_file = next((f for f in files if f.startswith(".argilla/") and f.endswith("settings.json")), None)
        assert settings_file is not None, files
        settings = json.loads(hub_server.files(repo)[settings_file])
        assert {q["name"] for q in settings["questions"]} == {"is_abusive", "severity"}
        records = load_dataset(repo, split="train")
        assert records.num_rows == 12
        assert set(records["id"]) == set(load_items(config)["item_id"])
    finally:
        argilla_client.datasets(name="push-export", workspace="tests").delete()
