"""Issue 25.5, consent: an item whose `data.consent_column` refuses (or says nothing) never reaches Argilla, a remote
LLM or the curated dataset, and is counted. The rule (`items.has_consent`), publishing on the real embedded server,
the remote LLM's refusal before any request (a real OpenAI client against a local socket that records what reaches
it), and a curated push to a folder."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional

import argilla as rg
import numpy as np
import pandas as pd
import pytest
import yaml

from support.recording_llm import RecordingLLM
from workspaces.config import ConfigError, load_config
from workspaces.items import NO_CONSENT, check_consent, consent_mask, has_consent, load_items

# item id -> consent value, as a CSV holds it ("" is an empty cell: missing)
CONSENT = {"item-000": "yes", "item-001": "contract", "item-002": "withdrawn", "item-003": "",
           "item-004": "legitimate-interest", "item-005": "false", "item-006": "1", "item-007": "No",
           "item-008": "true", "item-009": "0"}
CONSENTED = {"item-000", "item-001", "item-004", "item-006", "item-008"}
WITHHELD = set(CONSENT) - CONSENTED


def _project(tmp_path: Path, dataset: str = "consent", *, consent_column: Optional[str] = "consent",
             llm: Optional[dict[str, Any]] = None, hub: Optional[dict[str, Any]] = None) -> Path:
    """A small CSV project whose column `consent` holds `CONSENT`; each item's text names its id."""
    pd.DataFrame({"id": list(CONSENT), "text": [f"the text of {i}" for i in CONSENT],
                  "consent": list(CONSENT.values())}).to_csv(tmp_path / "items.csv", index=False)
    data: dict[str, Any] = {"path": "items.csv"}
    if consent_column is not None:
        data["consent_column"] = consent_column
    config: dict[str, Any] = {
        "name": "consent", "data": data, "fields": [{"name": "text", "title": "Text"}],
        "questions": [{"name": "q", "kind": "label", "labels": {"a": "first", "b": "second"}}],
        "argilla": {"dataset": dataset, "workspace": "tests"}, "run_dir": str(tmp_path / "run")}
    if llm is not None:
        config["llm"] = llm
    if hub is not None:
        config["hub"] = hub
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ---- the rule -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, consents", [
    (True, True), (False, False), (np.bool_(True), True), (np.bool_(False), False),
    (1, True), (0, False), (0.0, False), (2.5, True), (np.int64(1), True), (np.int64(0), False),
    ("yes", True), ("TRUE", True), ("1", True), ("y", True), ("granted", True),
    ("contract", True), ("legitimate-interest", True), ("Legitimate interest", True), ("legal_obligation", True),
    ("no", False), ("No", False), ("false", False), ("0", False), ("none", False), ("None", False),
    ("withdrawn", False), (" Withdrawn ", False), ("revoked", False), ("opted out", False), ("", False),
    ("   ", False), (None, False), (float("nan"), False), (np.nan, False), (pd.NA, False), (pd.NaT, False),
    (pd.Timestamp("2024-05-01"), True), ([], False), (["yes"], False), ({"given": True}, False),
])
def test_one_rule_decides_consent(value: Any, consents: bool) -> None:
    assert has_consent(value) is consents


def test_the_consent_mask_of_a_frame_and_the_reason_of_each_item_withheld(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    items = load_items(config)
    mask = consent_mask(config, items)
    assert mask.dtype == bool and set(items.loc[mask, "item_id"]) == CONSENTED
    checked = check_consent(config, items)
    assert set(checked.valid["item_id"]) == CONSENTED and set(checked.problems) == WITHHELD
    assert checked.problems["item-002"] == f"{NO_CONSENT}: data.consent_column 'consent' is 'withdrawn'"
    assert checked.problems["item-003"] == f"{NO_CONSENT}: data.consent_column 'consent' is missing"  # empty cell
    assert checked.counts() == {NO_CONSENT: len(WITHHELD)}
    # jsonl with real booleans and numbers, a NaN among them
    frame = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "consent": [True, False, 1.0, np.nan, 0.0]})
    assert consent_mask(config, frame).tolist() == [True, False, True, False, False]


def test_no_consent_column_means_every_item_consented(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, consent_column=None))
    assert config.data.consent_column is None
    items = load_items(config)
    assert consent_mask(config, items).all() and check_consent(config, items).problems == {}


def test_a_consent_column_the_data_lacks_is_one_clear_config_error(tmp_path: Path) -> None:
    path = _project(tmp_path, consent_column="gdpr_basis")
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        check_consent(config, load_items(config))
    message = str(caught.value)
    assert "data.consent_column" in message and "'gdpr_basis'" in message
    assert str(path) in message and "items.csv" in message


# ---- publish: the real embedded server ---------------------------------------------------------------------------

def test_an_item_without_consent_never_reaches_argilla(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    """Done-when of issue 25.5, on the real server: the items without consent are not records (neither after the
    whole project is published nor when a review batch names them), the others are, and the count is reported."""
    from workspaces.argilla_io.publish import get_dataset, publish

    config = load_config(_project(tmp_path, "consent-publish"))
    try:
        result = publish(config, argilla_client)
        assert result.records == len(CONSENTED) and result.no_consent == len(WITHHELD)
        assert set(result.skipped) == WITHHELD
        assert all(reason.startswith(f"{NO_CONSENT}: data.consent_column 'consent'")
                   for reason in result.skipped.values())
        on_server = {str(r.id) for r in get_dataset(argilla_client, config).records()}
        assert on_server == CONSENTED

        again = publish(config, argilla_client, item_ids=["item-000", "item-002", "item-005"])  # a review batch
        assert again.records == 1 and again.no_consent == 2 and set(again.skipped) == {"item-002", "item-005"}
        assert {str(r.id) for r in get_dataset(argilla_client, config).records()} == CONSENTED
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()


# ---- a remote LLM: never handed an item without consent ---------------------------------------------------------

class _RecordingSocket:
    """A TCP listener on 127.0.0.1 that keeps every byte sent to it and closes each connection: what reached a
    'remote' LLM server, request bodies included."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.received: List[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(1.0)
                chunks = []
                try:
                    while chunk := connection.recv(65536):
                        chunks.append(chunk)
                        if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                            break
                except OSError:
                    pass
                self.received.append(b"".join(chunks))

    @property
    def text(self) -> str:
        return b"".join(self.received).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def remote() -> Iterator[_RecordingSocket]:
    listener = _RecordingSocket()
    try:
        yield listener
    finally:
        listener.close()


def _openai(port: int) -> dict[str, Any]:
    return {"backend": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "remote-model",
            "questions": ["q"], "few_shot": 0, "timeout": 5, "max_retries": 0, "batch_size": 4}


def test_the_remote_backend_refuses_an_item_without_consent_before_any_request(tmp_path: Path,
                                                                                remote: _RecordingSocket) -> None:
    from pipelines.llms import ConsentRefusedError, build_llm, is_remote, refuse_without_consent

    config = load_config(_project(tmp_path, llm=_openai(remote.port)))
    llm = build_llm(config.llm)
    assert is_remote(llm) and is_remote(config.llm)
    items = load_items(config)
    with pytest.raises(ConsentRefusedError) as caught:
        refuse_without_consent(config, llm, items)
    message = str(caught.value)
    assert f"{len(WITHHELD)} item(s) have no consent" in message and "data.consent_column 'consent'" in message
    assert "nothing was sent" in message
    refuse_without_consent(config, llm, items[items["item_id"].isin(CONSENTED)])  # consented items pass
    local = load_config(_project(tmp_path, llm={"questions": ["q"]}))  # in process: may be handed every item
    assert not is_remote(local.llm)
    refuse_without_consent(local, local.llm, items)
    assert remote.received == []


def test_remote_labelling_never_sends_an_item_without_consent(tmp_path: Path, remote: _RecordingSocket) -> None:
    """The real OpenAI client of Distilabel against a socket that keeps what reaches it: the consented items are
    sent (and fail, the socket does not answer), the others never are and fail as `not sent: no consent`."""
    from pipelines.label import label_items

    config = load_config(_project(tmp_path, llm=_openai(remote.port)))
    run = label_items(config)
    by_id = run.labels.set_index("item_id")
    assert set(by_id.index) == set(CONSENT)
    assert all(str(by_id.loc[i, "error"]).startswith(f"not sent: {NO_CONSENT}") for i in WITHHELD)
    assert not any(str(by_id.loc[i, "error"]).startswith("not sent") for i in CONSENTED)
    assert run.no_consent == len(WITHHELD)
    sent = remote.text
    assert all(f"the text of {i}" in sent for i in CONSENTED), sent[:500]  # the socket did see the others
    assert not any(f"the text of {i}" in sent for i in WITHHELD)


def test_consent_given_later_is_labelled_on_the_next_run_and_a_few_shot_example_without_consent_stops_it(
        tmp_path: Path) -> None:
    from pipelines.label import label_items
    from pipelines.llms import ConsentRefusedError

    path = _project(tmp_path, llm={"questions": ["q"], "few_shot": 0})
    log = tmp_path / "prompts.log"
    first = label_items(load_config(path), llm=RecordingLLM(log_path=str(log)))
    assert first.no_consent == len(WITHHELD) and first.ok == len(CONSENTED)
    assert not any(f"the text of {i}" in log.read_text() for i in WITHHELD)
    # item-002 gives consent: the next run sends it (no --retry-failed), and nothing already labelled again
    frame = pd.read_csv(tmp_path / "items.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["id"] == "item-002", "consent"] = "yes"
    frame.to_csv(tmp_path / "items.csv", index=False)
    before = len(log.read_text().splitlines())
    second = label_items(load_config(path), llm=RecordingLLM(log_path=str(log)))
    sent = log.read_text().splitlines()[before:]
    assert len(sent) == 1 and "the text of item-002" in sent[0]
    assert second.no_consent == len(WITHHELD) - 1

    # few-shot examples go into every prompt: one without consent stops the run before anything is sent
    pool = pd.DataFrame({"id": ["p1", "p2"], "text": ["an example", "another example"], "consent": ["yes", "no"],
                         "annotations": [json.dumps([{"annotator_id": a, "q": "a"} for a in ("x", "y")]),
                                         json.dumps([{"annotator_id": a, "q": "b"} for a in ("x", "y")])]})
    pool["annotations"] = pool["annotations"].map(json.loads)
    pool.to_json(tmp_path / "pool.jsonl", orient="records", lines=True)
    raw = yaml.safe_load(path.read_text())
    raw["llm"].update(few_shot=2, few_shot_path="pool.jsonl")
    raw["human_labels"] = {"values": {"q": {"key": "q"}}}
    raw["run_dir"] = str(tmp_path / "run-fewshot")
    path.write_text(yaml.safe_dump(raw))
    before = len(log.read_text().splitlines())
    with pytest.raises(ConsentRefusedError, match=r"1 few-shot example\(s\) of llm.few_shot_path .*pool.jsonl have no "
                                                  r"consent \(data.consent_column 'consent'\), e.g. \['p2'\]"):
        label_items(load_config(path), llm=RecordingLLM(log_path=str(log)))
    assert len(log.read_text().splitlines()) == before


# ---- the curated dataset: pushed without any item lacking consent -----------------------------------------------

def test_the_curated_push_never_holds_an_item_without_consent(tmp_path: Path) -> None:
    """Every item, consented or not, has two agreeing submitted responses (and one non-consented item is gold): the
    pushed splits hold exactly the consented items, and the build and the card count the others."""
    from workspaces.curated import build_curated, push

    (tmp_path / "gold.txt").write_text("item-000\nitem-005\n")
    config = load_config(_project(tmp_path, hub={"gold_ids_path": str(tmp_path / "gold.txt")}))
    run = config.run_path
    run.mkdir(parents=True)
    rows = [{"record_id": f"rec-{i}", "item_id": i, "question": "q", "annotator": annotator, "value": "a",
             "status": "submitted", "updated_at": pd.Timestamp("2024-05-01T10:00:00Z")}
            for i in CONSENT for annotator in ("alice", "bob")]
    pd.DataFrame(rows).to_parquet(run / "annotations.parquet")

    curated = build_curated(config)
    curated_ids = {i for frame in curated.splits.values() for i in frame["item_id"]}
    assert curated_ids == CONSENTED
    assert curated.excluded["no_consent"] == len(WITHHELD) and curated.excluded["unknown_item_annotations"] == 0
    assert set(curated.splits["gold"]["item_id"]) == {"item-000"}

    result = push(config, to=tmp_path / "pushed")
    assert result.excluded["no_consent"] == len(WITHHELD)
    pushed = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "pushed" / "data").glob("*.parquet"))])
    assert set(pushed["item_id"]) == CONSENTED
    folder_text = "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "pushed").rglob("*") if p.is_file())
    assert not any(f"the text of {i}" in folder_text for i in WITHHELD)
    assert f"- no consent: {len(WITHHELD)}" in (tmp_path / "pushed" / "README.md").read_text()
