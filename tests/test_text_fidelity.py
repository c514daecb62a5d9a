"""Text reaches Argilla as the source text, safely (issue 26, point 1).

Every field is published as Markdown (`records.display_text`) with only what Argilla 2.8's renderer would act on
escaped, and `records.source_text` is its exact inverse: texts full of Markdown and HTML published through the
project's own `publish` come back from the real server, through `rg.Dataset.records` and `to_datasets()`, as the
source text byte for byte, and ordinary prose comes back unchanged even without `source_text`. Why not a plain field:
the installed server's front end shows one as raw HTML (checked here in its static files; tests/test_browser.py
shows a payload running there in a real browser). What the reviewer sees is checked in tests/test_browser.py.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import argilla as rg
import pandas as pd
import pyarrow as pa
import pytest

from support.hostile_text import HOSTILE_TEXTS, PROSE, source_texts, write_project
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.records import display_text, source_text
from workspaces.argilla_io.replay import replay_recorded_labels
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config
from workspaces.curated import build_curated
from workspaces.items import load_items

# what Markdown, HTML, the GFM autolinker, KaTeX and the escaping itself could act on, plus text around them
_ALPHABET = list("*_#`<>&\\[]()!|~$=+-.:;@/ \t\n\r") + [
    "&amp;", "&nbsp;", "&emsp;", "&#8203;", "&#60;", "&lt", "\\&", "\\\\", "http://", "https:", "www.", "a@b.co",
    "<b>", "</b>", "<!--", "1.", "2)", "    ", "a", "Z", "7", "😀", "👍🏽", "ש", "م", "\u00a0", "\u200b", "\u2003"]


# ------------------------------------------------------------------------------------------------------ the inverse
@pytest.mark.parametrize("text", HOSTILE_TEXTS + PROSE)
def test_source_text_undoes_display_text(text: str) -> None:
    assert source_text(display_text(text)) == text


def test_source_text_undoes_display_text_on_random_markup() -> None:
    rng = random.Random(26)
    for _ in range(20_000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 40)))
        assert source_text(display_text(text)) == text, repr(text)


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_prose_is_stored_as_written(text: str) -> None:
    assert display_text(text) == text


def test_markup_is_escaped() -> None:
    """The hostile texts are not stored as given: each has something the renderer would turn into markup."""
    assert [t for t in HOSTILE_TEXTS[:16] if display_text(t) == t] == []
    assert display_text("<b>x</b> **y**") == "\\<b>x\\</b> \\*\\*y\\*\\*"


# ----------------------------------------------------------------------------------------- the installed front end
def _front_end(server: Any) -> str:
    """The JavaScript of the Argilla UI the embedded server serves (argilla_server's static files in its venv)."""
    [static] = Path(server.venv).glob("lib/python*/site-packages/argilla_server/static/_nuxt")
    return "\n".join(path.read_text(errors="replace") for path in sorted(static.glob("*.js")))


def test_argilla_ui_shows_a_plain_field_as_raw_html_and_a_markdown_field_sanitised(embedded_server: Any,
                                                                                    argilla_server: Any) -> None:
    """Why every field is Markdown: in the installed UI's TextField component a plain field (`use_markdown` false)
    is `innerHTML` of a `<div>`, or, holding a closed tag pair, the `srcdoc` of an `<iframe>` with no `sandbox`
    attribute (same origin: a script there reaches the reviewer's page); a Markdown field is `marked` (GFM, `breaks`)
    then DOMPurify."""
    js = _front_end(embedded_server)
    assert re.search(r'useMarkdown\?\w+\("MarkdownRenderer",\{attrs:\{markdown:\w+\.fieldText\}\}\)'
                     r':\w+\.isHTML\?\w+\("Sandbox",\{attrs:\{content:\w+\.fieldText\}\}\)'
                     r':\w+\("div",\{class:\w+\.classes,domProps:\{innerHTML:\w+\._s\(\w+\.fieldText\)\}\}\)', js)
    assert r"isHTML:function isHTML(){return/<([A-Za-z][A-Za-z0-9]*)\b[^>]*>(.*?)<\/\1>/.test(this.fieldText)}" in js
    frames = re.findall(r'\("iframe",\{ref:"iframe",attrs:\{([^}]*)\}', js)
    assert frames and all(re.fullmatch(r'srcdoc:\w+\.template,frameborder:"0",scrolling:"no"', f) for f in frames)
    assert ".concat(this.content)}" in js  # the frame's document is the field's text, as is
    assert "marked.parse(this.markdown,{headerIds:!1,mangle:!1,breaks:!0})" in js
    assert re.search(r"postprocess:function postprocess\(\w+\)\{return \w+\.sanitize\(\w+,", js)


# ------------------------------------------------------------------------------------------------ the real server
@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, argilla_client: rg.Argilla) -> Any:
    """HOSTILE_TEXTS and PROSE published by the project's own `publish`; the dataset is deleted afterwards."""
    config = load_config(write_project(tmp_path_factory.mktemp("fidelity"), "text-fidelity", "fidelity-tests"))
    items = load_items(config)
    assert dict(zip(items["item_id"], items["text"])) == source_texts(), "the project reads the texts as written"
    result = publish(config, argilla_client)
    assert result.records == len(source_texts()) and not result.failed and not result.skipped
    dataset = get_dataset(argilla_client, config)
    yield config, dataset
    dataset.delete()


def test_records_read_through_the_sdk_give_the_source_text(published: Any) -> None:
    sources = source_texts()
    stored = {record.id: record.fields["text"] for record in published[1].records}
    assert set(stored) == set(sources)
    wrong = {i: (sources[i], source_text(stored[i])) for i in sources if source_text(stored[i]) != sources[i]}
    assert not wrong, wrong
    prose = {i for i, text in sources.items() if text in PROSE}
    assert {i: stored[i] for i in prose} == {i: sources[i] for i in prose}, "prose reads back unchanged, raw"


def test_records_exported_with_to_datasets_give_the_source_text(published: Any) -> None:
    """`to_datasets()` is what Argilla's own `dataset.to_hub` uploads."""
    sources = source_texts()
    exported = published[1].records.to_datasets()
    stored = dict(zip(exported["id"], exported["text"]))
    assert set(stored) == set(sources)
    assert {i: source_text(stored[i]) for i in sources} == sources
    assert [stored[i] for i, text in sources.items() if text in PROSE] == PROSE


def test_replay_sync_and_curated_dataset_keep_the_source_text(published: Any, argilla_client: rg.Argilla) -> None:
    """The project's own reads from the server (replay: record ids; sync: responses) never take a field's text from
    it: the curated dataset built from what sync brought back holds each source text byte for byte."""
    config, _ = published
    sources = source_texts()
    labels = pd.DataFrame({"item_id": list(sources), "question": "q", "annotator": "fidelity-r1", "value": "a"})
    assert replay_recorded_labels(config, argilla_client, labels=labels).responses == len(sources)
    assert sync(config, argilla_client).responses == len(sources)
    curated = build_curated(config)
    rows = pa.concat_tables(list(curated.tables.values())).to_pylist()
    assert {row["item_id"]: row["text"] for row in rows} == sources
