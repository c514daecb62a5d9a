"""Errors a user meets: one root (`CurateError`), one exit code per class in every command, one clear line, never a
traceback for a known failure; and the defects a new user's probe found, each with a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import free_port
from workspaces.config import load_config
from workspaces.errors import (ArgillaError, ConfigError, CurateError, DataLossError, EXIT_CODES, GateClosedError,
                               PromiseBrokenError,
                               HubError, ModelError, RunFileError)
from workspaces.items import load_items

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def _curate(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def _demo_copy(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_error_class_has_its_own_exit_code() -> None:
    classes = [CurateError, ConfigError, RunFileError, ArgillaError, ModelError, HubError, GateClosedError,
               DataLossError, PromiseBrokenError]
    assert len({c.exit_code for c in classes}) == len(classes)
    assert all(issubclass(c, CurateError) for c in classes)
    assert EXIT_CODES[2] == "ConfigError" and EXIT_CODES[8] == "DataLossError"
    readme = (ROOT / "README.md").read_text()
    for code, name in EXIT_CODES.items():
        assert f"| {code} | `{name}`" in readme, f"README's exit-code table lacks {name}"


@pytest.mark.parametrize("command", ["label", "embed", "publish", "sync", "report", "push"])
def test_a_bad_config_exits_2_with_one_line_in_every_command(tmp_path: Path, command: str) -> None:
    path = _demo_copy(tmp_path, colour="blue")  # an unknown key
    result = _curate(command, str(path), env={"ARGILLA_API_URL": f"http://127.0.0.1:{free_port()}",
                                              "ARGILLA_API_KEY": "unused"})
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert "colour: unknown key" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_user_text_in_errors_is_printed_as_written(tmp_path: Path) -> None:
    """Rich markup must not eat `[a-z0-9_-]` in a message."""
    path = _demo_copy(tmp_path, name="Not Valid!")
    result = _curate("report", str(path))
    assert result.returncode == ConfigError.exit_code
    assert "[a-z0-9_-]" in result.stderr


def test_duplicate_yaml_keys_non_utf8_and_repeated_rating_values_are_refused(tmp_path: Path) -> None:
    text = DEMO.read_text()
    duplicated = tmp_path / "dup.yaml"
    duplicated.write_text(text.replace('      "no": The user turn is not abusive',
                                       '      "yes": again\n      "no": The user turn is not abusive'))
    with pytest.raises(ConfigError, match="'yes' is given twice"):
        load_config(duplicated)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(text.replace("Cercas Curry", "Cercas Curr\u00ff").encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text(text.replace("values: [1, 2, 3, 4, 5]", "values: [1, 1, 2]"))
    with pytest.raises(ConfigError, match=r"questions\[severity\].*distinct.*\[1\]"):
        load_config(repeated)


def test_csv_ids_are_text_and_a_missing_id_names_its_row(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,text\n007,first\n1,second\n01,third\n7,fourth\n")
    config = {"name": "ids", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": ""}}],
              "argilla": {"dataset": "ids"}}
    (tmp_path / "ids.yaml").write_text(yaml.safe_dump(config))
    assert load_items(load_config(tmp_path / "ids.yaml"))["item_id"].tolist() == ["007", "1", "01", "7"]
    (tmp_path / "items.csv").write_text("id,text\n007,first\n,second\n")
    with pytest.raises(ConfigError, match=r"1 row\(s\) have no id in column 'id' \(data row\(s\) 2\)"):
        load_items(load_config(tmp_path / "ids.yaml"))


def test_a_corrupt_report_says_corrupt_not_absent(tmp_path: Path) -> None:
    from workspaces.agreement import read_report

    (tmp_path / "report.json").write_text('{"questions": {')
    with pytest.raises(RunFileError, match="corrupt"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(RunFileError, match="corrupt"):
        read_report(tmp_path)
    (tmp_path / "report.json").unlink()
    with pytest.raises(RunFileError, match="no report.json yet; run `curate report"):
        read_report(tmp_path)


def test_a_wrong_api_key_says_the_key_was_refused(argilla_server, tmp_path: Path) -> None:
    path = _demo_copy(tmp_path)
    result = _curate("sync", str(path), env={"ARGILLA_API_URL": argilla_server.api_url,
                                             "ARGILLA_API_KEY": "curate.wrong-key"})
    assert result.returncode == ArgillaError.exit_code
    assert "refused the API key" in result.stderr and argilla_server.api_url in result.stderr
    assert "cannot reach" not in result.stderr


def test_url_without_key_is_an_error_not_the_embedded_server(tmp_path: Path) -> None:
    path = _demo_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ARGILLA_API_KEY"}
    env["ARGILLA_API_URL"] = "http://127.0.0.1:1"
    result = subprocess.run([sys.executable, "-m", "workspaces", "sync", str(path)], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == ArgillaError.exit_code
    assert "ARGILLA_API_KEY is not" in result.stderr


def test_publish_of_a_new_dataset_prints_no_sdk_not_found_warnings(argilla_server, argilla_client,
                                                                   tmp_path: Path) -> None:
    path = _demo_copy(tmp_path, argilla={"dataset": "errors-fresh", "workspace": "errors-fresh-ws"},
                      data={"path": str(ROOT / "data/convabuse/valid.jsonl"), "id_column": "item_id", "limit": 3})
    result = _curate("publish", str(path), env={"ARGILLA_API_URL": argilla_server.api_url,
                                                "ARGILLA_API_KEY": argilla_server.api_key})
    assert result.returncode == 0, result.stderr
    assert "not found" not in (result.stderr + result.stdout).lower()
    assert "created dataset errors-fresh" in result.stdout


def test_header_only_csv_publishes_nothing_and_says_so(argilla_server, tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,text\n")
    config = {"name": "empty", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": ""}}],
              "argilla": {"dataset": "errors-empty", "workspace": "tests"}, "run_dir": str(tmp_path / "run")}
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump(config))
    result = _curate("publish", str(tmp_path / "empty.yaml"), env={"ARGILLA_API_URL": argilla_server.api_url,
                                                                   "ARGILLA_API_KEY": argilla_server.api_key})
    assert result.returncode == ConfigError.exit_code and "nothing was published" in result.stderr


def test_the_demo_ends_a_known_failure_with_one_line(argilla_server, tmp_path: Path) -> None:
    path = _demo_copy(tmp_path, llm={"backend": "llama-cpp", "model": str(tmp_path / "missing.gguf"),
                                     "questions": ["is_abusive"]},
                      argilla={"dataset": "errors-demo", "workspace": "tests", "min_submitted": 3})
    result = _curate("demo", "--config", str(path), "--limit", "5",
                     env={"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key})
    assert result.returncode == ModelError.exit_code, result.stdout[-2000:] + result.stderr[-2000:]
    assert "missing.gguf" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_the_demo_ends_a_server_failure_with_one_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = _curate("demo", "--config", str(_demo_copy(tmp_path)), "--limit", "5",
                     env={"ARGILLA_API_URL": dead, "ARGILLA_API_KEY": "curate.some-key"})
    assert result.returncode == ArgillaError.exit_code, result.stdout[-2000:] + result.stderr[-2000:]
    assert dead in result.stderr and "cannot reach Argilla" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unreachable_hub_names_its_url(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    from workspaces.curated.push import _checked_token

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    with pytest.raises(HubError, match=rf"could not reach the Hub at {dead}") as caught:
        _checked_token("hf_secret_token_value", "org/name")
    assert "hf_secret_token_value" not in str(caught.value)


def test_a_server_dying_mid_publish_ends_in_one_line(tmp_path: Path) -> None:
    """The embedded server killed while `curate publish` sends batches: exit 4 and one message, no traceback."""
    import signal
    import time

    import pandas as pd

    from workspaces.argilla_io.server import EmbeddedServer

    server = EmbeddedServer(home=tmp_path / "home", port=free_port(), redis_port=free_port())
    info = server.up()
    try:
        pd.DataFrame({"id": [f"i{n}" for n in range(40000)], "text": [f"item {n}" for n in range(40000)]}).to_csv(
            tmp_path / "items.csv", index=False)
        config = {"name": "dying", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
                  "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": ""}}],
                  "argilla": {"dataset": "dying"}, "run_dir": str(tmp_path / "run")}
        (tmp_path / "dying.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, "ARGILLA_API_URL": info.api_url, "ARGILLA_API_KEY": info.api_key}
        process = subprocess.Popen([sys.executable, "-m", "workspaces", "publish", str(tmp_path / "dying.yaml")],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        pids = json.loads((server.home / "pids.json").read_text())["processes"]
        import argilla as rg

        client = rg.Argilla(api_url=info.api_url, api_key=info.api_key)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill the server once the first batches are in
            dataset = client.datasets("dying", workspace="curate") if client.workspaces("curate") else None
            if dataset is not None and dataset.progress().get("total", 0) >= 512:
                break
            time.sleep(0.1)
        os.killpg(pids["server"]["pid"], signal.SIGKILL)
        out, err = process.communicate(timeout=300)
    finally:
        server.down()
    assert process.returncode == ArgillaError.exit_code, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err
    assert info.api_url in err and ("broke" in err or "cannot reach" in err)


def test_a_server_dying_mid_sync_ends_in_one_error_and_keeps_the_snapshot(tmp_path: Path) -> None:
    """The embedded server killed after the first page of records: `sync` raises one `ArgillaError` naming the URL
    (what the CLI prints as one line) and the last snapshot stays byte for byte."""
    import signal
    import time

    import argilla as rg
    import pandas as pd

    from workspaces.argilla_io.publish import publish
    from workspaces.argilla_io.server import EmbeddedServer
    from workspaces.argilla_io.sync import sync

    server = EmbeddedServer(home=tmp_path / "home", port=free_port(), redis_port=free_port())
    info = server.up()
    try:
        pd.DataFrame({"id": [f"i{n}" for n in range(2500)], "text": [f"item {n}" for n in range(2500)]}).to_csv(
            tmp_path / "items.csv", index=False)
        config = {"name": "dying-sync", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
                  "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": ""}}],
                  "argilla": {"dataset": "dying-sync"}, "run_dir": str(tmp_path / "run")}
        (tmp_path / "dying.yaml").write_text(yaml.safe_dump(config))
        project = load_config(tmp_path / "dying.yaml")
        client = rg.Argilla(api_url=info.api_url, api_key=info.api_key)
        publish(project, client)
        first = sync(project, client)
        before = first.path.read_bytes()
        pids = json.loads((server.home / "pids.json").read_text())["processes"]

        def kill_after_the_first_page(done: int, total: int) -> None:
            if done == 1000:
                os.killpg(pids["server"]["pid"], signal.SIGKILL)
                time.sleep(1)

        with pytest.raises(ArgillaError) as caught:
            sync(project, client, progress=kill_after_the_first_page)
    finally:
        server.down()
    message = str(caught.value)
    assert info.api_url in message and ("broke" in message or "cannot reach" in message), message
    assert "\n" not in message and "Traceback" not in message
    assert first.path.read_bytes() == before, "the last snapshot is untouched"


def test_the_readme_exit_code_table_is_the_code() -> None:
    """Issue 26.6: every row of the README's exit-code table names the class that exits with that code, and every
    class is in the table."""
    from workspaces.errors import EXIT_CODES

    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("## Errors and exit codes", 1)[1].splitlines()
    table = {int(cells[1]): cells[2].strip(" `") for cells in (line.split("|") for line in lines)
             if len(cells) > 3 and cells[1].strip().isdigit()}
    assert table.pop(0) == ""
    assert table == EXIT_CODES
