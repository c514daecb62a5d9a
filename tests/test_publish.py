"""Publishing untrusted items: one bad item never spoils the others (issue 13), on the real server."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pandas as pd
import yaml

from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.records import source_text
from workspaces.config import load_config


def _project(tmp_path: Path, texts: list[str], dataset: str) -> Path:
    pd.DataFrame({"id": [f"item-{n:03d}" for n in range(len(texts))], "text": texts}).to_csv(tmp_path / "items.csv",
                                                                                             index=False)
    config = {"name": "bad-items", "data": {"path": "items.csv", "max_chars": 5000},
              "fields": [{"name": "text", "title": "Text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {"a": "first", "b": "second"}}],
              "argilla": {"dataset": dataset, "workspace": "tests"}, "run_dir": str(tmp_path / "run")}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_empty_and_over_long_items_are_skipped_with_their_reason(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    texts = [f"query number {n}" for n in range(300)]
    texts[17], texts[140] = "", "y" * 6000
    config = load_config(_project(tmp_path, texts, "publish-bad-items"))
    result = publish(config, argilla_client, batch_size=256)
    try:
        assert result.records == 298 and result.created
        assert result.skipped["item-017"].startswith("empty: required field(s) text")
        assert result.skipped["item-140"].startswith("too long: text (6,000 chars)")
        dataset = get_dataset(argilla_client, config)
        assert dataset.progress()["total"] == 298
    finally:
        get_dataset(argilla_client, config).delete()


def test_a_record_the_server_refuses_fails_alone(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    """A suggestion outside the label set (e.g. from a labeler prompted with other labels) makes the server refuse
    that record; the rest of its batch is still published and the failure is reported with the server's reason."""
    config = load_config(_project(tmp_path, [f"text {n}" for n in range(10)], "publish-refused"))
    (tmp_path / "run").mkdir()
    labels = [{"item_id": f"item-{n:03d}", "question": "q", "label": "zzz" if n == 4 else "a", "confidence": 0.9,
               "probabilities": json.dumps({"a": 0.9}), "model": "m", "prompt_hash": "h", "raw_output": "{}",
               "status": "ok", "error": None} for n in range(10)]
    pd.DataFrame(labels).to_parquet(tmp_path / "run" / "labels.parquet")
    result = publish(config, argilla_client)
    try:
        assert list(result.failed) == ["item-004"] and "zzz" in result.failed["item-004"]
        assert result.records == 9
        dataset = get_dataset(argilla_client, config)
        published = {r.id: r for r in dataset.records(with_suggestions=True)}
        assert set(published) == {f"item-{n:03d}" for n in range(10)} - {"item-004"}
        assert all(r.suggestions["q"].value == "a" for r in published.values())
    finally:
        get_dataset(argilla_client, config).delete()


HOSTILE = [
    '<script>parent.document.title="PWNED-"+Object.keys(parent.localStorage).join(",")</script>',
    '<img src=x onerror="alert(1)"> and <iframe src="javascript:alert(2)"></iframe>',
    "[click](javascript:alert(3)) ![x](http://127.0.0.1:9/x.png) <http://127.0.0.1:9/>",
    "# not a heading\n    not code\n- not a list\n1. not a list\n> not a quote\n***\n`not code` *not em* _x_",
    "a &lt; b &amp;&amp; c | d ~~e~~ $x$ \\*still\\* {{ template }} @user: 100%",
    "  two leading spaces,   three inside,\ttab\r\n    indented line\rold mac line",
]


def _rendered_text(markdown: str) -> tuple[str, set[str]]:
    """Render Markdown as a CommonMark renderer with raw HTML enabled would; return its text and the tags used."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": True}).render(markdown)

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.text, self.tags = [], set()

        def handle_starttag(self, tag, attrs) -> None:
            self.tags.add(tag)
            if tag == "br":
                self.text.append("\n")

        def handle_data(self, data) -> None:
            self.text.append(data)

    parser = Collect()
    parser.feed(html)
    return "".join(parser.text).replace("\n\n", "\n").strip("\n"), parser.tags


def test_hostile_text_is_published_escaped_as_markdown_and_renders_as_written(argilla_client: rg.Argilla,
                                                                               tmp_path: Path) -> None:
    """Issue 13 (publish side; the browser proof is tests/test_browser.py): on the server every field is a Markdown
    field (sanitised by the UI) whose value, rendered, is the item's text exactly, with no element from the data."""
    config = load_config(_project(tmp_path, HOSTILE, "publish-hostile"))
    publish(config, argilla_client)
    try:
        dataset = get_dataset(argilla_client, config)
        assert all(field.use_markdown for field in dataset.settings.fields)
        published = {r.id: r.fields["text"] for r in dataset.records()}
        for n, original in enumerate(HOSTILE):
            stored = published[f"item-{n:03d}"]
            assert stored != original and source_text(stored) == original, stored  # escaped, and exactly undone
            text, tags = _rendered_text(stored)
            assert tags <= {"p", "br"}, (original, tags)
            expected = original.replace("\r\n", "\n").replace("\r", "\n")
            # as written, line breaks, indentation and runs of spaces included (a renderer may trim the field's ends)
            assert text.replace("\u00a0", " ").replace("\u2003", "\t").strip() == expected.strip(), (original, stored)
    finally:
        get_dataset(argilla_client, config).delete()


def test_concurrent_publishes_both_succeed_without_a_traceback_or_sql(argilla_server, argilla_client: rg.Argilla,
                                                                      tmp_path: Path) -> None:
    """Issue 13: two `curate publish` at once, from the same checkout and from a second one (another run dir):
    every one ends with exit 0, never a traceback or an SQL statement with record text."""
    import os
    import subprocess
    import sys

    first = _project(tmp_path, [f"secret text number {n}" for n in range(600)], "publish-concurrent")
    other = tmp_path / "checkout-2"
    other.mkdir()
    raw = yaml.safe_load(first.read_text())
    raw["data"]["path"] = str(tmp_path / "items.csv")
    raw["run_dir"] = str(other / "run")
    (other / "project.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    root = Path(__file__).resolve().parents[1]
    try:
        processes = [subprocess.Popen([sys.executable, "-m", "workspaces", "publish", str(path)], env=env, cwd=root,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for path in (first, first, other / "project.yaml")]
        outputs = [process.communicate(timeout=600) for process in processes]
        for process, (out, err) in zip(processes, outputs):
            assert "Traceback" not in out + err and "SQL" not in out + err and "secret text" not in err, err[-3000:]
            assert process.returncode == 0, err[-3000:]
        assert get_dataset(argilla_client, load_config(first)).progress()["total"] == 600
    finally:
        dataset = get_dataset(argilla_client, load_config(first))
        if dataset is not None:
            dataset.delete()


def test_suggestions_and_vectors_reach_the_right_records_across_chunks(argilla_client: rg.Argilla,
                                                                      tmp_path: Path) -> None:
    """Publish reads labels and vectors as Arrow and turns them into records a chunk (1,000 items) at a time: every
    record of 2,500 gets exactly its own suggestion, confidence and vector, suppressed items and failed or unknown
    label rows get none, and the reported count of suggestions is what the server holds."""
    n = 2500
    config = load_config(_project(tmp_path, [f"query number {i}" for i in range(n)], "publish-chunks"))
    run = tmp_path / "run"
    run.mkdir()
    labelled = {f"item-{i:03d}": ("a" if i % 2 else "b", round(0.5 + (i % 50) / 100, 2)) for i in range(n) if i % 3}
    failed = {f"item-{i:03d}" for i in range(n) if i % 7 == 0 and i % 3}
    rows = [{"item_id": item, "question": "q", "label": label, "confidence": score, "model": "m",
             "status": "failed" if item in failed else "ok"} for item, (label, score) in labelled.items()]
    rows.append({"item_id": "item-000", "question": "not-a-question", "label": "a", "confidence": 0.9, "model": "m",
                 "status": "ok"})
    pd.DataFrame(rows).to_parquet(run / "labels.parquet")
    vectors = {f"item-{i:03d}": [float(i % 11), 1.0, float(i % 13) / 2] for i in range(n) if i % 5}
    pd.DataFrame({"item_id": list(vectors), "vector": list(vectors.values())}).to_parquet(run / "embeddings.parquet")
    suppressed = {"item-010", "item-1501", "item-2499"}
    result = publish(config, argilla_client, suppressed=suppressed)
    try:
        expected = {item: value for item, value in labelled.items() if item not in failed | suppressed}
        assert result.records == n and result.vectors and result.suggestions == len(expected)
        dataset = get_dataset(argilla_client, config)
        published = {r.id: r for r in dataset.records(with_suggestions=True, with_vectors=True)}
        assert len(published) == n
        for item, record in published.items():
            if item in expected:
                label, score = expected[item]
                assert record.suggestions["q"].value == label and record.suggestions["q"].score == score, item
                assert record.metadata["llm_confidence_q"] == score, item
            else:
                assert len(record.suggestions) == 0, item
                assert "llm_confidence_q" not in (record.metadata or {}), item
            if item in vectors:
                assert record.vectors["text_embedding"] == vectors[item], item
            else:
                assert "text_embedding" not in record.vectors, item
    finally:
        get_dataset(argilla_client, config).delete()
