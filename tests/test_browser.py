"""The reviewer flow in a real browser: headless Chromium from Debian's packages (`chromium`, `chromium-driver`,
installed by scripts/setup.sh), driven by Selenium against the system chromedriver, on the embedded Argilla server.

A small project (scripted labeler, vectors from the project's embedder) goes through the loop's own commands
(`curate triage`, `curate select` with honeypots, audit items and draft suppression); a reviewer created by
`workspaces.argilla_io.annotators` logs in through the sign-in form, opens the dataset, walks every record and submits
an answer; `curate sync` brings it back. Along the way: data that looks like HTML or Markdown shows exactly as written
and nothing in it runs (issue 13, point 1), and nothing on the page or in what the server hands the reviewer tells a
honeypot, an audit item or a suppressed item apart (issue 11). A screenshot is kept in the run dir as evidence
(`<run dir>/browser/reviewer.png`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.embed import embed_texts, embedded_texts
from support.annotator_view import annotator_records, annotator_settings, record_shape
from support.hostile_text import HOSTILE_TEXTS, source_texts, visible_form, write_project
from workspaces.argilla_io.annotators import add_annotator
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import user_client
from workspaces.cli import app
from workspaces.config import load_config
from workspaces.items import load_items
from workspaces.rundir import EMBEDDINGS, write_table

ROOT = Path(__file__).resolve().parents[1]
REVIEWER = "browser-reviewer"
GUIDELINE = "Decide whether the message is polite or rude. Sarcasm counts as rude; a complaint said politely is polite."
MODEL = "scripted-llm-7b"
MARKERS = ("audit", "route", "honeypot", "gold", "suppress", "auto", "plan", "role")
PAYLOAD = '<script>parent.document.title="PWNED-"+Object.keys(parent.localStorage).join(",")</script>'
# Untrusted data that looks like markup: each must be shown exactly as written, and none may run.
LOOKALIKES = [
    PAYLOAD,
    "<img src=x onerror=\"parent.document.title='PWNED-img'\"> nice picture",
    "<svg onload=\"parent.document.title='PWNED-svg'\"></svg> and <b>bold?</b> <i>no</i>",
    "<iframe srcdoc=\"<script>parent.parent.document.title='PWNED-frame'</script>\"></iframe> see above",
    "[click here](javascript:parent.document.title='PWNED-link') or <a href=\"javascript:void(0)\">here</a>",
    "**not bold** _not italic_ `not code` # not a heading ~~kept~~ &lt;b&gt; &amp; 5 < 6 > 4",
    "> not a quote\n- not a list\n1. not numbered\n| not | a table |\n---",
]
SKIP_REASON = ("chromium + chromium-driver are not installed (scripts/setup.sh installs them with apt-get when it runs "
               "as root; elsewhere: sudo apt-get install chromium chromium-driver)")


# ----------------------------------------------------------------------------------------------------- the browser
def _browser_paths() -> tuple[str, str]:
    """The system Chromium and chromedriver, or skip with the reason scripts/setup.sh recorded."""
    chromium = "/usr/lib/chromium/chromium" if os.access("/usr/lib/chromium/chromium", os.X_OK) \
        else shutil.which("chromium")
    driver = "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else shutil.which("chromedriver")
    if not chromium or not driver:
        note = ROOT / ".venv" / ".browser-unavailable"
        pytest.skip(note.read_text().strip() if note.exists() else SKIP_REASON)
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Headless Chromium (system packages, no driver download) that can reach 127.0.0.1 only."""
    driver_ = _chrome(tmp_path_factory)
    try:
        yield driver_
    finally:
        driver_.quit()


def _chrome(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A new headless Chromium with its own profile (see `browser`)."""
    chromium, driver = _browser_paths()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver_ = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    driver_.set_page_load_timeout(60)
    return driver_


def _wait(driver: Any, condition: Any, timeout: float = 30) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the UI re-renders the record as it moves on: an element found a moment ago may be gone, so look again
    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition)


# ----------------------------------------------------------------------------------------------------- the project
def _invoke(server: Any, *args: str) -> Any:
    """A `curate` command in process, against the test server."""
    result = CliRunner().invoke(app, list(args), env={"ARGILLA_API_URL": server.api_url,
                                                      "ARGILLA_API_KEY": server.api_key})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def _items() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """90 messages (60 with a gold label), and the scripted labeler's answer for each."""
    polite = ["Thanks for sorting out parcel {n} so quickly, much appreciated.",
              "Could you tell me when parcel {n} will arrive? Thank you.",
              "Parcel {n} came damaged, could you please send a new one?"]
    rude = ["Parcel {n} is late again, you are all useless.",
            "Fix parcel {n} now or I will make your life miserable.",
            "Oh great, parcel {n} lost again, what a brilliant service."]
    rows, labels = [], {}
    for n in range(90):
        item_id = f"msg-{(n * 37) % 90:03d}"  # ids say nothing about an item's role
        gold = "rude" if n % 3 == 0 else "polite"
        text = (rude if gold == "rude" else polite)[n % 3 if gold == "polite" else (n // 3) % 3].format(n=100 + n)
        row: dict[str, Any] = {"id": item_id, "text": text, "channel": ["email", "chat", "phone"][n % 3],
                               "gold": gold if n < 60 else None}
        if n < 60:  # the gold set: the labeler is right on 58 of 60, confident when right
            right = n not in (7, 31)
            label = gold if right else ("polite" if gold == "rude" else "rude")
            labels[item_id] = {"label": label, "confidence": 0.9 + (n % 10) / 100 if right else 0.8}
        elif n < 60 + len(LOOKALIKES):  # look-alikes: low confidence, so triage sends them to review
            row["text"] = LOOKALIKES[n - 60]
            labels[item_id] = {"label": "rude" if n % 2 else "polite", "confidence": 0.6}
        elif n < 72:  # the labeler failed on these: published without a suggestion, like suppressed items
            labels[item_id] = {"label": None, "confidence": None}
        elif n < 76:
            labels[item_id] = {"label": gold, "confidence": 0.7}
        else:  # confident: auto, or audit for a random share
            labels[item_id] = {"label": gold, "confidence": 0.95 + (n % 5) / 100}
        rows.append(row)
    return rows, labels


def _prepare(folder: Path, server: Any) -> Path:
    """Write the project into `folder`, embed its items, and run it through `curate triage` and `curate select`."""
    rows, labels = _items()
    (folder / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = {"name": "browser", "data": {"path": "items.jsonl"},
           "fields": [{"name": "text", "title": "Message"}],
           "questions": [{"name": "tone", "kind": "label",
                          "labels": {"polite": "friendly, neutral or a politely worded complaint",
                                     "rude": "insulting, threatening or sarcastic"}}],
           "metadata": [{"name": "channel"}],
           "guidelines": GUIDELINE,
           "argilla": {"dataset": "browser-review", "workspace": "browser-tests", "min_submitted": 1},
           "run_dir": str(folder / "run"),
           "reference": {"gold_columns": {"tone": "gold"}},
           "gate": {"metric": "kappa", "min": 0.6, "target_precision": 0.8, "min_reference": 50},
           "calibration": {"target_precisions": [0.8], "bootstrap": 50, "min_per_label": 200},
           "triage": {"audit_share": 0.15, "seed": 3},
           "honeypots": {"share": 0.15, "min_seen": 3, "min_accuracy": 0.7},
           "suppression": {"every": 4},
           "selection": {"batch": 60, "strategy": "default"}}
    path = folder / "browser.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    config.run_path.mkdir(parents=True)
    other = {"polite": "rude", "rude": "polite"}
    pd.DataFrame([{"item_id": i, "question": "tone", "label": a["label"], "confidence": a["confidence"],
                   "probabilities": None if a["label"] is None else json.dumps(
                       {a["label"]: a["confidence"], other[a["label"]]: 1 - a["confidence"]}),
                   "model": MODEL, "prompt_hash": "p1", "raw_output": "{}",
                   "status": "failed" if a["label"] is None else "ok",
                   "error": "model error" if a["label"] is None else None, "run_id": "r",
                   "labeled_at": "2026-01-01T00:00:00+00:00"} for i, a in labels.items()]
                 ).to_parquet(config.run_path / "labels.parquet")
    # the vectors `curate embed` would write (same model, same texts), encoded in process: no pipeline start-up
    items = load_items(config)
    texts = embedded_texts(config, items)
    write_table(EMBEDDINGS.path(config.run_path), pd.DataFrame({
        "item_id": items["item_id"], "vector": list(embed_texts(texts)), "model": "all-MiniLM-L6-v2",
        "text_hash": [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]}))
    _invoke(server, "triage", str(path))
    _invoke(server, "select", str(path))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, argilla_server: Any, argilla_client: Any) -> Any:
    """A triaged project whose review batch (`curate select`: review + audit items, honeypots, every 4th item
    without its suggestion) is on the server, and a reviewer with a generated password."""
    config = load_config(_prepare(tmp_path_factory.mktemp("browser"), argilla_server))
    rows, labels = _items()
    annotator = add_annotator(argilla_client, config, REVIEWER)
    assert annotator.password, "a new reviewer gets a generated password"
    yield config, annotator.password, labels, {row["id"]: row["text"] for row in rows}
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


@pytest.fixture(scope="module")
def roles(project: Any) -> pd.DataFrame:
    """Per published item: its role in the plan, its triage route, whether it went without a suggestion."""
    config = project[0]
    plan = pd.read_parquet(config.run_path / "review_plan.parquet").set_index("item_id")
    routes = pd.read_parquet(config.run_path / "routes.parquet").drop_duplicates("item_id").set_index("item_id")
    plan["route"] = routes["route"].reindex(plan.index)
    return plan


# ----------------------------------------------------------------------------------------------------- the walk
_RECORD_JS = """
const root = document.querySelector('.record__wrapper');
const field = root.querySelector('.fields .markdown-render');
const form = document.querySelector('.resizable-v__right');
const outside = (el) => !el.closest('.markdown-render') && el.tagName !== 'STYLE';
const shape = [...root.querySelectorAll('*'), ...form.querySelectorAll('*')].filter(outside)
  .map(el => el.tagName + '.' + [...el.classList].filter(c => !c.startsWith('label-active')).sort().join('.'))
  .sort();
const words = [...root.querySelectorAll('*'), ...form.querySelectorAll('*')].filter(outside)
  .filter(el => el.children.length === 0).map(el => el.textContent.trim()).filter(Boolean);
return {
  index: document.querySelector("[aria-label='Current Record']").textContent.trim(),
  text: field.innerText,
  html: field.innerHTML,
  tags: [...field.querySelectorAll('*')].map(el => el.tagName.toLowerCase()),
  suggested: [...form.querySelectorAll('.label-text')].filter(l => l.querySelector('.label-text__suggestion'))
    .map(l => [l.querySelector('.label-text__text').textContent.trim(),
               l.querySelector('.label-text__suggestion__score').textContent.trim()]),
  shape: shape,
  words: words.filter(w => !/^[0-9.]+$/.test(w)).sort(),
  title: document.title,
  storage: Object.keys(localStorage).sort(),
  scripts: [...document.querySelectorAll('script')].map(s => s.textContent).filter(t => t.includes('PWNED')),
  attributes: [...document.querySelectorAll('*')].flatMap(el => [...el.attributes].map(a => a.name + '=' + a.value))
    .filter(a => a.includes('PWNED') || /^on/.test(a) || a.includes('javascript:')),
  frames: [...document.querySelectorAll('iframe')].map(f => { try { return f.contentDocument.title } catch (e) {
    return 'cross-origin' } }),
};
"""


def _normal(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


@pytest.fixture(scope="module")
def walk(browser: Any, project: Any, argilla_server: Any) -> dict[str, Any]:
    """Log in through the form, open the dataset, read the guideline, the filter and sort menus, and every record."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    config, password, _, texts = project
    browser.get(f"{argilla_server.api_url}/sign-in")
    _wait(browser, EC.element_to_be_clickable((By.NAME, "Username"))).send_keys(REVIEWER)
    browser.find_element(By.NAME, "Password").send_keys(password)
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "form button[type=submit]"))).click()
    _wait(browser, lambda d: "/sign-in" not in d.current_url)
    title, storage = browser.title, sorted(browser.execute_script("return Object.keys(localStorage)"))
    _wait(browser, EC.element_to_be_clickable((By.PARTIAL_LINK_TEXT, config.argilla.dataset))).click()
    _wait(browser, lambda d: "annotation-mode" in d.current_url)
    _wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, ".fields .markdown-render")))

    menus = {}
    for menu, entries in (("Filters", ("Metadata", "Suggestions")), ("Sort", ())):
        opener = _wait(browser, EC.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)='{menu}']")))
        opener.click()
        for entry in entries or (None,):
            button = _wait(browser, EC.element_to_be_clickable(
                (By.XPATH, f"//div[contains(@class,'filters')]//button[normalize-space(.)='{entry}']"))) \
                if entry else opener
            if entry:
                button.click()
            [content] = _wait(browser, lambda d: _shown(d, ".dropdown__content"))
            menus[entry or menu] = [line for line in content.text.splitlines() if line.strip()]
            button.click()  # and closed again
            _wait(browser, lambda d: not _shown(d, ".dropdown__content"))
        if menu == "Filters":
            opener.click()  # fold the filter bar

    by_text = {_normal(text): item_id for item_id, text in texts.items()}
    records: dict[str, dict[str, Any]] = {}
    while True:
        seen = browser.execute_script(_RECORD_JS)
        item_id = by_text.get(_normal(seen["text"]))
        assert item_id is not None, f"record {seen['index']} shows text that is not an item's: {seen['text']!r}"
        records[item_id] = seen
        following = browser.find_element(By.CSS_SELECTOR, "button[aria-label='Next (→)']")
        if following.get_attribute("disabled"):
            break
        following.click()
        _wait(browser, lambda d: d.execute_script(
            "return document.querySelector(\"[aria-label='Current Record']\").textContent.trim()") != seen["index"]
            and d.find_element(By.CSS_SELECTOR, ".fields .markdown-render").text != seen["text"] and d.find_elements(
            By.CSS_SELECTOR, ".resizable-v__right .label-text"))
    return {"title": title, "storage": storage, "menus": menus, "records": records}


def _shown(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [element for element in driver.find_elements(By.CSS_SELECTOR, css) if element.is_displayed()]


def _go_to(browser: Any, index: str) -> None:
    from selenium.webdriver.common.by import By

    current = lambda d: d.execute_script(  # noqa: E731
        "return document.querySelector(\"[aria-label='Current Record']\").textContent.trim()")
    while current(browser) != index:
        before = current(browser)
        browser.find_element(By.CSS_SELECTOR, "button[aria-label='Previous (←)']").click()
        _wait(browser, lambda d: current(d) != before)


# ----------------------------------------------------------------------------------------------------- the tests
def test_injected_markup_is_shown_literally_and_never_runs(walk, project, browser) -> None:
    _, _, _, texts = project
    shown = {texts[i]: seen for i, seen in walk["records"].items()}
    assert set(LOOKALIKES) <= set(shown), "every look-alike record was published and opened"
    for text in LOOKALIKES:
        seen = shown[text]
        assert _normal(seen["text"]) == _normal(text), f"{text!r} is shown as {seen['text']!r}"
        assert set(seen["tags"]) <= {"p", "br"}, f"{text!r} became markup: {seen['html']}"
    for seen in walk["records"].values():
        assert seen["title"] == walk["title"] and "PWNED" not in seen["title"], seen["title"]
        assert seen["storage"] == walk["storage"], "the data touched the reviewer's storage"
        assert not seen["scripts"] and not seen["attributes"], (seen["scripts"], seen["attributes"])
        assert not [f for f in seen["frames"] if f and "PWNED" in f]
    assert "PWNED" not in browser.title


def test_a_reviewer_sees_text_guideline_and_scored_suggestion_and_submits_in_the_ui(
        walk, project, roles, browser, argilla_server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support import expected_conditions as EC

    config, _, labels, texts = project
    records = walk["records"]
    assert set(records) == set(roles.index), "the walk saw every published record, and only those"
    for item_id, seen in records.items():  # the LLM's label with its score (shown to one decimal), unless held back
        if roles.at[item_id, "suppressed"] or labels[item_id]["label"] is None:
            assert seen["suggested"] == [], item_id
        else:
            [[label, score]] = seen["suggested"]
            assert label == labels[item_id]["label"] and abs(float(score) - labels[item_id]["confidence"]) <= 0.051

    payload = next(i for i, t in texts.items() if t == PAYLOAD)
    # not the last record of the queue: after its submit there is no next record to move on to (the order of records
    # logged in one batch is the server's, so the payload may come last)
    last = str(len(records))
    candidates = [i for i, s in records.items() if s["suggested"] and s["index"] != last]
    target = payload if payload in candidates else candidates[0]
    suggested = records[target]["suggested"][0][0]
    answer = "polite" if suggested == "rude" else "rude"
    _go_to(browser, records[target]["index"])
    field = browser.find_element(By.CSS_SELECTOR, ".fields .markdown-render")
    assert _normal(field.text) == _normal(texts[target])

    chip = browser.find_element(By.CSS_SELECTOR, f"label[for=tone_{suggested}]")
    ActionChains(browser).move_to_element(chip).perform()  # the suggestion's tooltip names the labeler
    _wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, ".tooltip-content--show")))
    assert MODEL in browser.find_element(By.CSS_SELECTOR, ".tooltip-content--show").text
    assert browser.find_element(By.ID, f"tone_{suggested}").is_selected(), "the suggestion is pre-selected"

    browser.find_element(By.CSS_SELECTOR, "button.panel__header").click()  # the guidelines panel
    _wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".panel"), GUIDELINE))
    evidence = config.run_path / "browser" / "reviewer.png"
    evidence.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(evidence)) and evidence.stat().st_size > 10_000
    print(f"screenshot: {evidence}")

    browser.find_element(By.CSS_SELECTOR, f"label[for=tone_{answer}]").click()
    _wait(browser, lambda d: d.find_element(By.ID, f"tone_{answer}").is_selected()
          and not d.find_element(By.ID, f"tone_{suggested}").is_selected())
    # the UI enables Submit once it has taken the new answer: a click before that is lost on a loaded machine
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "button.button--submit"))).click()
    _wait(browser, lambda d: _normal(d.find_element(By.CSS_SELECTOR, ".fields .markdown-render").text)
          != _normal(texts[target]))  # the pending queue moved on

    _invoke(argilla_server, "sync", str(config.source_path))
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    mine = synced[synced["annotator"] == REVIEWER]
    assert mine[["item_id", "question", "value", "status"]].values.tolist() == [[target, "tone", answer, "submitted"]]
    assert answer != labels[target]["label"]
    assert "PWNED" not in browser.title


def test_nothing_tells_honeypots_audit_or_suppressed_items_apart(walk, project, roles, argilla_client) -> None:
    config, _, labels, _ = project
    honeypots = set(roles.index[roles["role"] == "honeypot"])
    audit = set(roles.index[roles["route"] == "audit"])
    suppressed = set(roles.index[roles["suppressed"]])
    no_label = {i for i in roles.index if labels[i]["label"] is None}
    assert honeypots and audit and suppressed - audit and no_label, "the batch mixes every kind of item"
    assert audit <= suppressed, "audit items go out without a suggestion (their score passed the threshold)"
    plain = set(roles.index) - honeypots - audit - suppressed - no_label
    groups = {"honeypot": honeypots - suppressed, "review": plain}

    # the page: the same elements, classes and words around the text (a suppressed or audit item is an item with
    # no label)
    page = {name: {json.dumps([walk["records"][i]["shape"], walk["records"][i]["words"]]) for i in ids}
            for name, ids in groups.items()}
    assert len(page["review"]) == 1 and page["honeypot"] <= page["review"]  # a confident honeypot goes unsuggested
    quiet = {json.dumps([walk["records"][i]["shape"], walk["records"][i]["words"]]) for i in suppressed | no_label}
    assert len(quiet) == 1, "suppressed and audit items look like items the labeler never answered"
    menus = " ".join(line for lines in walk["menus"].values() for line in lines).lower()
    assert "channel" in menus and not [m for m in MARKERS if m in menus], walk["menus"]

    # what the server hands the reviewer: records, their metadata, and the settings the filters and sorts come from
    reviewer = next(u for u in argilla_client.users if u.username == REVIEWER)
    own = user_client(argilla_client, reviewer)
    dataset_id = get_dataset(argilla_client, config).id
    view = annotator_records(own, dataset_id)
    assert set(view) == set(roles.index)
    shapes = {name: {record_shape(view[i]) for i in ids} for name, ids in groups.items()}
    assert len(shapes["review"]) == 1 and shapes["honeypot"] <= shapes["review"]
    assert len({record_shape(view[i]) for i in suppressed | no_label}) == 1
    for record in view.values():
        assert set(record.get("metadata") or {}) <= {"channel", "llm_confidence_tone"}
        assert not [m for m in MARKERS if m in json.dumps(record.get("metadata") or {}).lower()]
        assert not re.search("|".join(MARKERS), record["external_id"])
    settings = annotator_settings(own, dataset_id)
    names = [entry["name"] for entries in settings.values() for entry in entries]
    assert {"text", "tone", "channel"} <= set(names)
    assert not [n for n in names if any(marker in n.lower() for marker in MARKERS)], names


def test_no_score_or_confidence_tells_audit_items_from_review_items(walk, roles, argilla_client, project) -> None:
    """An audit item passed the gate's threshold by construction, so its score would tell it apart: audit items carry
    neither a suggestion nor the confidence metadata, on the page and in what the server returns to the reviewer."""
    config = project[0]
    audit = roles.index[roles["route"] == "audit"]
    review = roles.index[(roles["route"] == "review") & (roles["role"] != "honeypot") & ~roles["suppressed"]]
    assert len(audit) and len(review)
    assert not [i for i in audit if walk["records"][i]["suggested"]], "an audit item shows a score"
    assert [i for i in review if walk["records"][i]["suggested"]], "review items keep their scored suggestion"
    reviewer = next(u for u in argilla_client.users if u.username == REVIEWER)
    view = annotator_records(user_client(argilla_client, reviewer), get_dataset(argilla_client, config).id)
    for item_id in audit:
        assert not view[item_id].get("suggestions") and "llm_confidence_tone" not in (view[item_id].get("metadata") or {})


# ------------------------------------------------------------------------------ text fidelity (issue 26, point 1)
FIDELITY_REVIEWER = "fidelity-reviewer"
_FIELD_JS = """
const field = document.querySelector('.record__wrapper .fields .markdown-render');
return {
  index: document.querySelector("[aria-label='Current Record']").textContent.trim(),
  text: field.innerText,
  html: field.innerHTML,
  tags: [...field.querySelectorAll('*')].map(el => el.tagName.toLowerCase()),
};
"""
_RAN_JS = "return {pwned: window.__pwned === undefined ? null : window.__pwned, title: document.title}"


def _sign_in_and_open(browser: Any, server: Any, username: str, password: str, dataset: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    browser.get(f"{server.api_url}/sign-in")
    _wait(browser, EC.element_to_be_clickable((By.NAME, "Username"))).send_keys(username)
    browser.find_element(By.NAME, "Password").send_keys(password)
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "form button[type=submit]"))).click()
    _wait(browser, lambda d: "/sign-in" not in d.current_url)
    _open(browser, server, dataset)


def _open(browser: Any, server: Any, dataset: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    browser.get(f"{server.api_url}/")
    _wait(browser, EC.element_to_be_clickable((By.PARTIAL_LINK_TEXT, dataset))).click()
    _wait(browser, lambda d: "annotation-mode" in d.current_url)


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory: pytest.TempPathFactory, argilla_server: Any, argilla_client: Any) -> Any:
    """HOSTILE_TEXTS and PROSE published by the project's `publish` (dataset `fidelity-markdown`), a plain-field
    dataset of two hostile texts as they are (`fidelity-plain`, what `use_markdown=False` would publish), a reviewer
    of both, and a browser of its own; both datasets are deleted afterwards."""
    import argilla as rg

    config = load_config(write_project(tmp_path_factory.mktemp("fidelity"), "fidelity-markdown", "fidelity-browser"))
    assert publish(config, argilla_client).records == len(source_texts())
    plain = rg.Dataset(name="fidelity-plain", workspace=config.argilla.workspace, client=argilla_client,
                       settings=rg.Settings(fields=[rg.TextField(name="text", use_markdown=False)],
                                            questions=[rg.LabelQuestion(name="q", labels=["a", "b"])]))
    plain.create()
    plain.records.log([{"text": HOSTILE_TEXTS[1]}, {"text": HOSTILE_TEXTS[0]}])  # innerHTML, then the frame
    annotator = add_annotator(argilla_client, config, FIDELITY_REVIEWER)
    driver = _chrome(tmp_path_factory)
    try:
        yield driver, annotator.password
    finally:
        driver.quit()
        get_dataset(argilla_client, config).delete()
        plain.delete()


@pytest.fixture(scope="module")
def fidelity_walk(fidelity: Any, argilla_server: Any) -> dict[str, Any]:
    """Every record of `fidelity-markdown` as the reviewer's page shows it, and whether anything ran meanwhile."""
    from selenium.webdriver.common.by import By

    browser, password = fidelity
    _sign_in_and_open(browser, argilla_server, FIDELITY_REVIEWER, password, "fidelity-markdown")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".record__wrapper .fields .markdown-render"))
    seen: list[dict[str, Any]] = []
    while True:
        seen.append(browser.execute_script(_FIELD_JS))
        following = browser.find_element(By.CSS_SELECTOR, "button[aria-label='Next (→)']")
        if following.get_attribute("disabled"):
            break
        following.click()
        _wait(browser, lambda d: (lambda now: now["index"] != seen[-1]["index"] and now["text"] != seen[-1]["text"])(
            d.execute_script(_FIELD_JS)))
    time.sleep(2)  # an image's onerror or a frame's script would have run by now
    return {"records": seen, **browser.execute_script(_RAN_JS)}


def test_reviewer_sees_each_hostile_text_as_written_and_none_runs(fidelity_walk: dict[str, Any]) -> None:
    expected = sorted(visible_form(text) for text in source_texts().values())
    shown = [visible_form(record["text"]) for record in fidelity_walk["records"]]
    assert len(shown) == len(expected), "the walk saw every record once"
    missing = [text for text in expected if text not in shown]
    assert not missing, (missing, [s for s in shown if s not in expected])
    for record in fidelity_walk["records"]:
        assert set(record["tags"]) <= {"p", "br"}, f"{record['text']!r} became markup: {record['html']}"
    assert fidelity_walk["pwned"] is None and not fidelity_walk["title"].startswith("PWNED"), fidelity_walk


def test_a_plain_field_would_run_the_text(fidelity_walk: dict[str, Any], fidelity: Any, argilla_server: Any) -> None:
    """Why `display_text` and not a plain field: the same texts in a `use_markdown=False` field run in the
    reviewer's page (Argilla 2.8 shows such a field as raw HTML)."""
    from selenium.webdriver.common.by import By

    browser, _ = fidelity
    _open(browser, argilla_server, "fidelity-plain")
    ran = lambda d: set(d.execute_script(_RAN_JS)["pwned"] or [])  # noqa: E731
    _wait(browser, lambda d: ran(d))  # the first record (the server's order) ran
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Next (→)']").click()
    _wait(browser, lambda d: ran(d) == {"img", "script"})  # `innerHTML` ran the image's, the frame the script
    assert browser.title.startswith("PWNED-")


# ------------------------------------------------------------------------------------------ a multi-label question
TAGS_REVIEWER = "tags-reviewer"


def _shape_project(tmp_path_factory: pytest.TempPathFactory, argilla_client: Any, config_name: str,
                   lines: list[str], dataset: str, reviewer: str) -> Any:
    """`lines` of a data file published as `configs/<config_name>` (dataset `dataset`, workspace tests), a reviewer
    and a browser of its own: yields (config, driver, the reviewer's password); the dataset is deleted afterwards."""
    folder = tmp_path_factory.mktemp(dataset)
    raw = yaml.safe_load((ROOT / "configs" / config_name).read_text())
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    raw["data"]["path"] = str(folder / "items.jsonl")
    raw["argilla"].update(dataset=dataset, workspace="tests")
    raw["run_dir"] = str(folder / "run")
    (folder / "project.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(folder / "project.yaml")
    assert publish(config, argilla_client).records == len(lines)
    annotator = add_annotator(argilla_client, config, reviewer)
    driver = _chrome(tmp_path_factory)
    try:
        yield config, driver, annotator.password
    finally:
        driver.quit()
        get_dataset(argilla_client, config).delete()


@pytest.fixture(scope="module")
def tags_project(tmp_path_factory: pytest.TempPathFactory, argilla_server: Any, argilla_client: Any) -> Any:
    """Three GoEmotions comments published as `configs/goemotions_tags.yaml` (a multi_label question)."""
    lines = (ROOT / "data" / "goemotions" / "comments.jsonl").read_text().splitlines()[:3]
    yield from _shape_project(tmp_path_factory, argilla_client, "goemotions_tags.yaml", lines, "browser-tags",
                              TAGS_REVIEWER)


def test_a_reviewer_ticks_two_tags_in_the_ui_and_sync_brings_back_exactly_those(tags_project, argilla_server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    config, browser, password = tags_project
    _sign_in_and_open(browser, argilla_server, TAGS_REVIEWER, password, "browser-tags")
    shown = _wait(browser, lambda d: _normal(d.find_element(By.CSS_SELECTOR, ".fields .markdown-render").text))
    for tag in ("joy", "love"):
        browser.find_element(By.CSS_SELECTOR, f"label[for=emotions_{tag}]").click()
        _wait(browser, lambda d: d.find_element(By.ID, f"emotions_{tag}").is_selected())
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "button.button--submit"))).click()
    _wait(browser, lambda d: _normal(d.find_element(By.CSS_SELECTOR, ".fields .markdown-render").text) != shown)

    _invoke(argilla_server, "sync", str(config.source_path))
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    mine = synced[synced["annotator"] == TAGS_REVIEWER]
    assert len(mine) == 1 and mine["status"].iloc[0] == "submitted"
    assert sorted(json.loads(mine["value"].iloc[0])) == ["joy", "love"]
    items = {json.loads(line)["text"]: json.loads(line)["id"]
             for line in Path(config.data.path).read_text().splitlines()}
    assert mine["item_id"].iloc[0] == items.get(next(t for t in items if _normal(t) == shown))


SPANS_REVIEWER = "spans-reviewer"


@pytest.fixture(scope="module")
def spans_project(tmp_path_factory: pytest.TempPathFactory, argilla_server: Any, argilla_client: Any) -> Any:
    """One WNUT-17 sentence published as `configs/wnut17_entities.yaml` (a span question); also yields the item."""
    line = next(line for line in (ROOT / "data" / "wnut17" / "sentences.jsonl").read_text().splitlines()
                if "Rick and Morty" in line)
    for config, driver, password in _shape_project(tmp_path_factory, argilla_client, "wnut17_entities.yaml", [line],
                                                   "browser-spans", SPANS_REVIEWER):
        yield config, driver, password, json.loads(line)


def test_a_reviewer_selects_a_span_in_the_ui_and_sync_brings_back_exactly_its_offsets(spans_project,
                                                                                      argilla_server) -> None:
    """The reviewer picks a label and drags over "Rick and Morty" in the real span UI; the synced response is that
    span, with the character offsets of the text as published."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    config, browser, password, item = spans_project
    _sign_in_and_open(browser, argilla_server, SPANS_REVIEWER, password, "browser-spans")
    field = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "p.span-annotation__field"))
    browser.find_element(By.CSS_SELECTOR, "label[for='entities-2dcreative-2dwork']").click()
    _wait(browser, lambda d: d.find_element(By.ID, "entities-2dcreative-2dwork").is_selected())
    word = "Rick and Morty"
    # where the first and the last character of the words are on screen, from a DOM Range over the field's text
    first, y, last, width, height = browser.execute_script("""
        const p = arguments[0], word = arguments[1], node = p.firstChild, i = node.textContent.indexOf(word);
        const r = document.createRange(), f = p.getBoundingClientRect();
        r.setStart(node, i); r.setEnd(node, i + 1); const a = r.getBoundingClientRect();
        r.setStart(node, i + word.length - 1); r.setEnd(node, i + word.length); const b = r.getBoundingClientRect();
        return [a.left - f.left + 1, a.top - f.top + a.height / 2, b.right - f.left - 1, f.width, f.height];
    """, field, word)
    ActionChains(browser).move_to_element_with_offset(field, int(first - width / 2), int(y - height / 2)) \
        .click_and_hold().move_to_element_with_offset(field, int(last - width / 2), int(y - height / 2)) \
        .release().perform()
    _wait(browser, lambda d: "CREATIVE-WORK" in d.find_element(By.CSS_SELECTOR, ".fields, .wrapper__records").text)
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "button.button--submit"))).click()
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "p.span-annotation__field"))

    _invoke(argilla_server, "sync", str(config.source_path))
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    mine = synced[synced["annotator"] == SPANS_REVIEWER]
    assert len(mine) == 1 and mine["status"].iloc[0] == "submitted" and mine["item_id"].iloc[0] == item["id"]
    start = item["text"].index(word)
    spans = [{"start": s["start"], "end": s["end"], "label": s["label"]} for s in json.loads(mine["value"].iloc[0])]
    assert spans == [{"start": start, "end": start + len(word), "label": "creative-work"}]


PAIRS_REVIEWER = "pairs-reviewer"


@pytest.fixture(scope="module")
def pairs_project(tmp_path_factory: pytest.TempPathFactory, argilla_server: Any, argilla_client: Any) -> Any:
    """Two HH-RLHF pairs of `configs/hh_rlhf_harmless_prefs.yaml`, judged by the real local LLM (`curate prefer`)
    and published the way the loop publishes them (the judge's answers are suggestions from `labels.parquet`)."""
    from pipelines.prefer import prefer_items

    folder = tmp_path_factory.mktemp("browser-pairs")
    raw = yaml.safe_load((ROOT / "configs" / "hh_rlhf_harmless_prefs.yaml").read_text())
    raw["data"].update(path=str(ROOT / "data" / "hh_rlhf" / "harmless_test_pairs_200.jsonl"), limit=2)
    raw["argilla"].update(dataset="browser-pairs", workspace="tests")
    raw["run_dir"] = str(folder / "run")
    (folder / "project.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(folder / "project.yaml")
    judged = prefer_items(config).preferences.set_index("item_id")
    assert (judged["status"] == "ok").all(), judged["error"].tolist()
    assert publish(config, argilla_client).records == 2
    annotator = add_annotator(argilla_client, config, PAIRS_REVIEWER)
    driver = _chrome(tmp_path_factory)
    try:
        yield config, driver, annotator.password, judged
    finally:
        driver.quit()
        get_dataset(argilla_client, config).delete()


def test_a_reviewer_sees_a_and_b_with_the_judges_suggestion_and_submits_a_choice(pairs_project, argilla_server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    config, browser, password, judged = pairs_project
    _sign_in_and_open(browser, argilla_server, PAIRS_REVIEWER, password, "browser-pairs")
    fields = _wait(browser, lambda d: [_normal(f.text) for f in d.find_elements(By.CSS_SELECTOR,
                                                                                 ".fields .markdown-render")] or None)
    assert len(fields) == 3, "prompt, response A and response B"
    items = load_items(config).set_index("item_id")
    shown = next(i for i in items.index if _normal(items.at[i, "response_a"]) == fields[1])
    assert fields[2] == _normal(items.at[shown, "response_b"])
    suggested = judged.at[shown, "preference"]
    assert browser.find_element(By.ID, f"preference_{suggested}").is_selected(), "the judge's choice is pre-selected"
    answer = "B" if suggested == "A" else "A"
    browser.find_element(By.CSS_SELECTOR, f"label[for=preference_{answer}]").click()
    _wait(browser, lambda d: d.find_element(By.ID, f"preference_{answer}").is_selected())
    _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "button.button--submit"))).click()
    _wait(browser, lambda d: _normal(d.find_elements(By.CSS_SELECTOR, ".fields .markdown-render")[1].text)
          != fields[1])

    _invoke(argilla_server, "sync", str(config.source_path))
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    mine = synced[(synced["annotator"] == PAIRS_REVIEWER) & (synced["question"] == "preference")]
    assert mine[["item_id", "value", "status"]].values.tolist() == [[shown, answer, "submitted"]]
