"""PII redaction before review (issue 11): the recognizers on real-looking text and look-alikes, stable tokens in the
run dir (owner-only map), the hook every stage reads items through, the LLM prompts, the real Argilla server, the
report's counts, `curate push` (redacted unless asked) and `curate redact`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import argilla as rg
import pandas as pd
import pytest
import yaml

from support.recording_llm import RecordingLLM
from workspaces.argilla_io.records import source_text
from workspaces.config import ConfigError, RedactionConfig, load_config
from workspaces.items import load_items
from workspaces.redaction import Redactor, find_pii, read_redaction_counts, read_tokens, restore
from workspaces.rundir import REDACTION, REDACTION_COUNTS

ROOT = Path(__file__).resolve().parents[1]


def _redact_one(text: str, spec: Optional[RedactionConfig] = None) -> str:
    return Redactor(spec or RedactionConfig()).redact(text)


# ---- the recognizers --------------------------------------------------------------------------------------------

REAL = [
    ("Hi, this is Jane (jane.doe+billing@example.co.uk), please refund me.",
     "Hi, this is Jane (<EMAIL_1>), please refund me."),
    ("Contact: MARK.O'NEIL@Mail.Example.ORG.", "Contact: <EMAIL_1>."),
    ("You can call me on 020 7946 0958 after 5pm", "You can call me on <PHONE_1> after 5pm"),
    ("my mobile is 07911 123456, thanks", "my mobile is <PHONE_1>, thanks"),
    ("US office: (202) 555-0143 or 212-555-0199.", "US office: <PHONE_1> or <PHONE_2>."),
    ("Ring +44 20 7946 0958 / +49 30 901820 / 0044 20 7946 0958",
     "Ring <PHONE_1> / <PHONE_2> / <PHONE_3>"),
    ("please call me on 2025550143", "please call me on <PHONE_1>"),
    ("My card 4111 1111 1111 1111 was charged twice", "My card <CARD_1> was charged twice"),
    ("card no. 5500-0000-0000-0004 expired", "card no. <CARD_1> expired"),
    ("Amex 3782 822463 10005 and 378282246310005", "Amex <CARD_1> and <CARD_2>"),
    ("the number on it is 4532015112830366.", "the number on it is <CARD_1>."),
    ("Send it to IBAN DE89 3704 0044 0532 0130 00 please", "Send it to IBAN <IBAN_1> please"),
    ("GB82WEST12345698765432 / FR14 2004 1010 0505 0001 3M02 606", "<IBAN_1> / <IBAN_2>"),
    ("IBAN: DE89 3704 0044 0532 0130 00 TODAY", "IBAN: <IBAN_1> TODAY"),
    ("Login from 203.0.113.7 was blocked; the other from 198.51.100.23.",
     "Login from <IP_1> was blocked; the other from <IP_2>."),
    ("IPv6 2001:db8::8a2e:370:7334 at 12:30:45", "IPv6 <IP_1> at 12:30:45"),
]


@pytest.mark.parametrize("text, expected", REAL)
def test_real_looking_values_become_tokens(text: str, expected: str) -> None:
    assert _redact_one(text) == expected


LOOK_ALIKES = [
    "Order #2025550143 has not arrived",                     # a 10-digit order number (a valid US number shape)
    "order 1234-5678-9012-3456 is late",                     # card-shaped, not a card (prefix, Luhn)
    "Invoice 4111 1111 1111 1112",                           # a card with a wrong Luhn digit
    "ref 4111111111111",                                     # 13 digits, Luhn fails
    "paid on 2024-05-12 at 14:30:00, due 12/05/2024 or 12.05.2024",
    "amount $1,234,567.89, fee £2,500.00, 1.234.567,89 EUR, 310326.0 points",
    "sum 250000 GBP transferred on 20240512",
    "version 10.0.0.1, v1.2.3.4, Python 3.11.7, argilla==2.8.0, Chrome 120.0.6099.109",
    "npm i pkg@1.2.3; ping @handle; mail user@localhost",
    "tracking 1Z999AA10123456784, conversation 056aa717919a44bfbac20a47ebb5ade8",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and ISBN 978-3-16-148410-0",
    "ref DE00 1234, GB00WEST12345698765432 (bad check digits)",
    "time 10:30:45, ratio 1:2:3, score 3:1",
    "local test on 127.0.0.1 and ::1 and 0.0.0.0",
    "item banking77-train-17, ticket item-0042, SKU 0000000000000000",
    "postcode SW1A 1AA, ZIP 94105-1234, account ending 4242",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_redacted(text: str) -> None:
    assert find_pii(text) == [], [text[s.start:s.end] for s in find_pii(text)]
    assert _redact_one(text) == text


# Every context word, as a word (the number is a version / a phone number) and as the end of a longer word (it is
# not: "server 192.168.10.24" is an address, issue 26.4). A word boundary, not the 12 characters before the number.
VERSION_WORDS = ["version", "ver", "ver.", "v.", "build", "release", "firmware", "rev", "rev."]
LONGER_WORDS = {"ver": ["server", "driver", "over", "never", "however"], "rev": ["prev"], "ver.": ["server."],
                "rev.": ["prev."], "v.": ["dev."], "version": ["subversion"], "build": ["rebuild"],
                "release": ["prerelease"], "firmware": ["xfirmware"]}


@pytest.mark.parametrize("word", VERSION_WORDS)
def test_a_version_word_keeps_the_number_and_the_end_of_a_longer_word_does_not(word: str) -> None:
    assert _redact_one(f"{word} 10.20.30.40 is out") == f"{word} 10.20.30.40 is out"
    for longer in LONGER_WORDS[word]:
        text = f"my {longer} 192.168.10.24 blocked me"
        assert _redact_one(text) == f"my {longer} <IP_1> blocked me", longer
    # the window before the number begins at the context word: the boundary still sees the letters before it
    padded = "x" * 20 + word + " " * (12 - len(word)) + "10.20.30.40"
    assert _redact_one(padded) == padded.replace("10.20.30.40", "<IP_1>")


def test_the_issue_examples_server_from_and_over_an_address_are_redacted() -> None:
    assert _redact_one("server 192.168.10.24 blocked me") == "server <IP_1> blocked me"
    assert _redact_one("from 10.1.2.3 and over 10.1.2.4") == "from <IP_1> and over <IP_2>"
    assert _redact_one("my ip is 192.168.10.24") == "my ip is <IP_1>"


PHONE_WORDS = {"phone": "xphone", "call": "recall", "tel": "hotel", "mobile": "automobile", "cell": "excell",
               "sms": "xsms", "fax": "xfax", "ring": "string", "dial": "radial"}


@pytest.mark.parametrize("word", sorted(PHONE_WORDS))
def test_a_phone_word_makes_a_bare_digit_run_a_phone_and_the_end_of_a_longer_word_does_not(word: str) -> None:
    assert _redact_one(f"{word} 2025550143 today") == f"{word} <PHONE_1> today"
    longer = PHONE_WORDS[word]
    assert _redact_one(f"{longer} 2025550143 today") == f"{longer} 2025550143 today"


def test_the_same_value_gets_the_same_token_numbered_in_order_and_restore_maps_back() -> None:
    redactor = Redactor()
    texts = ["a@example.com wrote to b@example.com", "b@example.com again, and a@example.com", "call +44 20 7946 0958"]
    out = [redactor.redact(t) for t in texts]
    assert out == ["<EMAIL_1> wrote to <EMAIL_2>", "<EMAIL_2> again, and <EMAIL_1>", "call <PHONE_1>"]
    assert redactor.tokens == {"<EMAIL_1>": "a@example.com", "<EMAIL_2>": "b@example.com",
                               "<PHONE_1>": "+44 20 7946 0958"}
    assert [restore(t, redactor.tokens) for t in out] == texts
    assert dict(redactor.counts) == {"email": 4, "phone": 1}
    # an existing map is extended, never renumbered
    again = Redactor(tokens=dict(redactor.tokens))
    assert again.redact("c@example.com, a@example.com") == "<EMAIL_3>, <EMAIL_1>"
    assert again.added == ["<EMAIL_3>"]


def test_config_patterns_and_kinds() -> None:
    spec = RedactionConfig(kinds=["email"], patterns=[{"name": "customer_id", "regex": r"\bCUST-\d{6}\b"}])
    text = "CUST-004211 (cust@example.com, +44 20 7946 0958) and CUST-004211 again; CUST-12 stays"
    assert _redact_one(text, spec) == \
        "<CUSTOMER_ID_1> (<EMAIL_1>, +44 20 7946 0958) and <CUSTOMER_ID_1> again; CUST-12 stays"


def _write_config(tmp_path: Path, **extra: Any) -> Path:
    config = {"name": "redact-config", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {"a": "A", "b": "B"}}],
              "argilla": {"dataset": "redact-config"}, "run_dir": "run", **extra}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_redaction_is_on_by_default_and_can_be_switched_off_or_narrowed(tmp_path: Path) -> None:
    default = load_config(_write_config(tmp_path)).redaction
    assert default.enabled and default.kinds == ["email", "phone", "card", "iban", "ip"] and not default.patterns
    off = load_config(_write_config(tmp_path, redaction={"enabled": False})).redaction
    assert not off.enabled
    narrow = load_config(_write_config(tmp_path, redaction={"kinds": ["card", "iban"], "phone_regions": ["de"]}))
    assert narrow.redaction.kinds == ["card", "iban"] and narrow.redaction.phone_regions == ["DE"]


@pytest.mark.parametrize("redaction, message", [
    ({"patterns": [{"name": "emp", "regex": "EMP-(\\d+"}]}, r"redaction\.patterns\[emp\]\.regex: not a valid regular"),
    ({"patterns": [{"name": "emp", "regex": "\\d*"}]}, r"redaction\.patterns\[emp\]\.regex: the pattern matches the empty"),
    ({"patterns": [{"name": "email", "regex": "x+"}]}, r"redaction: .*'email'.* is a built-in kind"),
    ({"patterns": [{"name": "Emp", "regex": "x+"}]}, r"redaction\.patterns\[Emp\]\.name"),
    ({"kinds": ["email", "ssn"]}, r"redaction\.kinds\[1\]"),
    ({"phone_regions": ["XX"]}, r"redaction\.phone_regions: .*unknown region code"),
    ({"enable": False}, r"redaction\.enable: unknown key"),
])
def test_a_bad_redaction_section_is_one_config_error_naming_the_key(tmp_path: Path, redaction: dict,
                                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write_config(tmp_path, redaction=redaction))


# ---- the hook every stage reads items through -------------------------------------------------------------------

ITEMS = [
    ("t-001", "My card 4111 1111 1111 1111 was charged twice, email me at jane.doe@example.com", "2024-05-12", 12.5),
    ("t-002", "Order #2025550143 never arrived, version 2.8.0 of the app", "2024-05-13", 1234.56),
    ("t-003", "jane.doe@example.com again: please call me on 020 7946 0958", "2024-05-14", 99.0),
    ("t-004", "Refund to IBAN DE89 3704 0044 0532 0130 00 from 203.0.113.7", "2024-05-15", 20240512.0),
    ("t-005", "Just a question about exchange rates", "2024-05-16", 0.0),
]
RAW_VALUES = ["4111 1111 1111 1111", "jane.doe@example.com", "020 7946 0958", "DE89 3704 0044 0532 0130 00",
              "203.0.113.7"]


def _items_project(tmp_path: Path, rows=ITEMS, dataset: str = "redaction-items", **extra: Any) -> Path:
    records = [{"id": item_id, "text": text, "note": f"agent note for {item_id}", "day": day, "amount": amount,
                "annotations": [{"annotator_id": "rev-a", "intent": "complaint" if n % 2 == 0 else "question"},
                                {"annotator_id": "rev-b", "intent": "complaint" if n % 2 == 0 else "question"}]}
               for n, (item_id, text, day, amount) in enumerate(rows)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {
        "name": "redaction-items", "data": {"path": "items.jsonl"},
        "fields": [{"name": "text", "title": "Customer message"}],
        "questions": [{"name": "intent", "kind": "label", "labels": {"complaint": "a complaint",
                                                                     "question": "a question"}}],
        "metadata": [{"name": "amount", "kind": "float"}, {"name": "day", "kind": "terms"}],
        "human_labels": {"values": {"intent": {"key": "intent"}}},
        "argilla": {"dataset": dataset, "workspace": "tests"}, "run_dir": "run", **extra,
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_load_items_redacts_the_fields_keeps_ids_and_metadata_and_stores_a_private_map(tmp_path: Path) -> None:
    config = load_config(_items_project(tmp_path))
    items = load_items(config).set_index("item_id")
    assert items.loc["t-001", "text"] == "My card <CARD_1> was charged twice, email me at <EMAIL_1>"
    assert items.loc["t-002", "text"] == ITEMS[1][1], "order number and version string stay"
    assert items.loc["t-003", "text"] == "<EMAIL_1> again: please call me on <PHONE_1>"
    assert items.loc["t-004", "text"] == "Refund to IBAN <IBAN_1> from <IP_1>"
    assert list(items.index) == ["t-001", "t-002", "t-003", "t-004", "t-005"]
    assert items["amount"].tolist() == [12.5, 1234.56, 99.0, 20240512.0, 0.0]
    assert items["day"].tolist() == [d for _, _, d, _ in ITEMS]
    assert items.loc["t-001", "annotations"][0] == {"annotator_id": "rev-a", "intent": "complaint"}

    path = REDACTION.path(config.run_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the map is owner-only"
    tokens = read_tokens(config.run_path)
    assert sorted(tokens.values()) == sorted(RAW_VALUES)
    assert not [p.name for p in config.run_path.iterdir() if p.name.endswith(".tmp")]
    counts = json.loads(REDACTION_COUNTS.path(config.run_path).read_text())
    assert not any(raw in json.dumps(counts) for raw in RAW_VALUES), "the counts file holds no value"
    assert read_redaction_counts(config) == {"items": 5, "items_redacted": 3, "by_kind": {
        "card": {"values": 1, "occurrences": 1}, "email": {"values": 1, "occurrences": 2},
        "iban": {"values": 1, "occurrences": 1}, "ip": {"values": 1, "occurrences": 1},
        "phone": {"values": 1, "occurrences": 1}}}
    raw = load_items(config, redact=False).set_index("item_id")
    assert raw.loc["t-001", "text"] == ITEMS[0][1]


def test_a_rerun_gives_identical_text_and_new_items_extend_the_map(tmp_path: Path) -> None:
    path = _items_project(tmp_path)
    first = load_items(load_config(path))
    map_before = REDACTION.path(tmp_path / "run").read_bytes()
    again = load_items(load_config(path))
    assert again.equals(first)
    assert REDACTION.path(tmp_path / "run").read_bytes() == map_before, "an unchanged run leaves the map alone"
    # new items first in the file: the old values keep their tokens, the new ones are numbered after them
    _items_project(tmp_path, rows=[("t-000", "new: bob@example.org, old: jane.doe@example.com", "2024-05-11", 1.0),
                                   *ITEMS])
    grown = load_items(load_config(path)).set_index("item_id")
    assert grown.loc["t-000", "text"] == "new: <EMAIL_2>, old: <EMAIL_1>"
    assert grown.loc[first["item_id"]].reset_index(drop=True)["text"].equals(first["text"])


def test_redaction_off_leaves_the_text_and_writes_no_map(tmp_path: Path) -> None:
    config = load_config(_items_project(tmp_path, redaction={"enabled": False}))
    assert load_items(config)["text"].tolist() == [t for _, t, _, _ in ITEMS]
    assert not REDACTION.path(config.run_path).exists()


def test_a_corrupt_map_is_one_run_file_error(tmp_path: Path) -> None:
    from workspaces.errors import RunFileError

    config = load_config(_items_project(tmp_path))
    load_items(config)
    REDACTION.path(config.run_path).write_text('{"tokens": {"EMAIL": 3}}')
    with pytest.raises(RunFileError, match=r"redaction_map\.json is corrupt"):
        load_items(config)


# ---- what the LLM sees -------------------------------------------------------------------------------------------

def test_the_llm_prompts_and_few_shot_examples_carry_tokens_not_values(tmp_path: Path) -> None:
    """Through the real Distilabel pipeline: every message an LLM receives (system, few-shot, item) is redacted."""
    from pipelines.label import label_items

    log = tmp_path / "prompts.jsonl"
    pool = [{"id": f"p-{n}", "text": text, "annotations": [{"annotator_id": a, "intent": label} for a in ("x", "y")]}
            for n, (text, label) in enumerate([("fraud on 5500 0000 0000 0004, mail fraud@bank-example.com", "complaint"),
                                               ("what is the rate for +44 20 7946 0958 calls?", "question")])]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    path = _items_project(tmp_path, llm={"questions": ["intent"], "few_shot": 2, "few_shot_path": "pool.jsonl"})
    config = load_config(path)
    run = label_items(config, llm=RecordingLLM(log_path=str(log), answer="complaint", runner_up="question"))
    assert run.ok == 5
    sent = log.read_text()
    conversations = [json.loads(line) for line in sent.splitlines()]
    assert len(conversations) == 5
    for raw in RAW_VALUES + ["5500 0000 0000 0004", "fraud@bank-example.com", "+44 20 7946 0958"]:
        assert raw not in sent, raw
    everything = " ".join(m["content"] for c in conversations for m in c)
    assert "<CARD_1>" in everything and "<CARD_2>" in everything and "<EMAIL_2>" in everything, everything[:2000]
    assert "Order #2025550143" in everything, "look-alikes reach the LLM as written"


# ---- the real Argilla server, the report and push ---------------------------------------------------------------

def test_no_raw_value_reaches_the_argilla_server_the_report_counts_and_push_keeps_tokens(
        argilla_client: rg.Argilla, tmp_path: Path) -> None:
    from workspaces.agreement import read_report, write_report
    from workspaces.argilla_io.publish import get_dataset, publish
    from workspaces.argilla_io.replay import replay_recorded_labels
    from workspaces.argilla_io.sync import sync
    from workspaces.curated import push

    config = load_config(_items_project(tmp_path, dataset="redaction-e2e"))
    publish(config, argilla_client)
    try:
        dataset = get_dataset(argilla_client, config)
        records = list(dataset.records(with_suggestions=True, with_vectors=True))
        assert len(records) == 5
        stored = json.dumps([r.to_dict() for r in records], default=str)
        for raw in RAW_VALUES:
            assert raw not in stored and raw.replace(".", "\\.") not in stored, raw
        texts = {r.id: source_text(r.fields["text"]) for r in records}  # the stored form, undone
        assert texts["t-001"] == "My card <CARD_1> was charged twice, email me at <EMAIL_1>"
        assert "2025550143" in texts["t-002"]
        # also what the server's search returns for a raw value: nothing
        assert list(dataset.records(query=rg.Query(query="jane.doe"))) == []

        replay_recorded_labels(config, argilla_client)
        sync(config, argilla_client)
        report, _ = write_report(config, bootstrap=0)
        assert report.redaction is not None and report.redaction.items_redacted == 3
        assert report.redaction.by_kind["email"].occurrences == 2
        assert read_report(config).redaction == report.redaction
        markdown = (config.run_path / "report.md").read_text()
        assert "PII redacted before review" in markdown and "| email | 1 | 2 |" in markdown

        folder = tmp_path / "pushed"
        push(config, to=folder)
        published = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
        assert b"<CARD_1>" in published
        for raw in RAW_VALUES:
            assert raw.encode() not in published, raw
        restored = config.model_copy(update={"hub": config.hub.model_copy(update={"restore_redacted": True})})
        push(restored, to=tmp_path / "restored")
        curated = pd.concat(pd.read_parquet(p) for p in (tmp_path / "restored").rglob("*.parquet"))
        assert sorted(curated["text"]) == sorted(t for _, t, _, _ in ITEMS)
        assert stat.S_IMODE(REDACTION.path(config.run_path).stat().st_mode) == 0o600
    finally:
        get_dataset(argilla_client, config).delete()


# ---- curate redact -----------------------------------------------------------------------------------------------

def _curate(*args: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workspaces", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def test_curate_redact_prints_each_line_redacted_in_order(tmp_path: Path) -> None:
    lines = ["mail a@example.com\tor b@example.com", "", "Order #2025550143 <b>as written</b> [x](y)",
             "again a@example.com, card 4111-1111-1111-1111", "CUST-004211 here"]
    result = _curate("redact", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["mail <EMAIL_1>\tor <EMAIL_2>", "", lines[2],
                                         "again <EMAIL_1>, card <CARD_1>", "CUST-004211 here", ""]
    path = _write_config(tmp_path, redaction={"patterns": [{"name": "customer_id", "regex": r"CUST-\d{6}"}]})
    result = _curate("redact", str(path), stdin="CUST-004211 here\nlast line without newline a@example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<CUSTOMER_ID_1> here\nlast line without newline <EMAIL_1>\n"
    assert not (tmp_path / "run").exists(), "curate redact writes nothing"
    bad = _write_config(tmp_path, redaction={"patterns": [{"name": "x", "regex": "("}]})
    result = _curate("redact", str(bad), stdin="x\n")
    assert result.returncode == ConfigError.exit_code and "redaction.patterns[x].regex" in result.stderr
    assert "Traceback" not in result.stderr
