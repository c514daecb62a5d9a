"""Texts full of Markdown, HTML and tricky white space, for the text-fidelity tests (issue 26 point 1): each must
reach a reviewer exactly as written with nothing in it running, and come back from Argilla as the source text, byte
for byte. A payload that runs sets `top.__pwned` and the page title, which the browser test checks."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["HOSTILE_TEXTS", "PROSE", "source_texts", "visible_form", "write_project"]

_RUN = "top.__pwned=(top.__pwned||[]).concat('{0}');top.document.title='PWNED-{0}'"

HOSTILE_TEXTS = [
    f"<script>{_RUN.format('script')}</script> a script",
    f"<img src=x onerror=\"{_RUN.format('img')}\"> an image",
    f"<svg onload=\"{_RUN.format('svg')}\"></svg> <b>bold?</b> <i>no</i>",
    f"<iframe srcdoc=\"<script>{_RUN.format('frame')}</script>\"></iframe> a frame",
    f"<object data=\"javascript:{_RUN.format('object')}\"></object><embed src=\"javascript:{_RUN.format('embed')}\">",
    f"[click me](javascript:{_RUN.format('link')}) or <a href=\"javascript:{_RUN.format('a')}\">here</a>",
    "![tracker](http://127.0.0.1:9/pixel.png) and <http://127.0.0.1:9/autolink>",
    "**not bold** *not em* __not strong__ _not it_ ~~not struck~~ ~x~ `not code` ``two``",
    "# not a heading\n## nor this\n- not a list\n+ nor this\n* nor this\n1. not numbered\n2024) nor this",
    "> not a quote\n---\n***\n___\nSetext?\n===\nnor\n-",
    "```\nnot a fence\n```\n~~~\nnor this\n~~~",
    "| not | a table |\n|-----|---------|\n| a | b |",
    "math? $x^2$ and $$\\frac{1}{2}$$ but a lone $5 stays",
    "backslashes: \\ \\\\ \\* \\_ C:\\Users\\name\\ end\\",
    "entities: &lt;b&gt; &amp; &#60; &#x3C; &nbsp; &emsp; &#8203; &copy fish & chips, R&D, 5 < 6 > 4",
    "urls: https://example.org/a_b_c?x=1&y=2 www.example.com ftp://x.org mail a.b+c@example.co.uk @handle",
    "{{ template }} ${injection} %s %(name)s <% erb %> [[wiki]] [sic] [1] (paren) !bang",
    "emoji 😀👍🏽 and 🇫🇷 — em dash, “quotes”, ‘single’, … ellipsis",
    "RTL: שלום עולם and مرحبا بالعالم mixed with English",
    "  two leading spaces\n    four leading (not code)\n\ttab-indented\n \t mixed",
    "inner   runs    of spaces\tand\ttabs\t\tdoubled, and two  spaces between sentences.  Like so.",
    "\n\nleading newlines, then\n\n\n\nthree blank lines, then a trailing newline\n",
    "windows\r\nline\r\nendings and an old\rmac one",
    "trailing spaces   \nand a line of spaces\n   \nafter it",
    "\u00a0no-break\u00a0spaces\u00a0and\u200bzero\u200bwidth",
    "<!-- a comment --> <!DOCTYPE html> <?php echo 1; ?> </p></div> <style>body{display:none}</style>",
    "<URL> placeholder and <span class='emoji-bytes' data-emoji='x'>",
]

# Ordinary prose: stored exactly as written, so even a text read straight from Argilla is the source.
PROSE = [
    "Thanks for sorting out parcel 7 so quickly, much appreciated!",
    "Could you tell me when it'll arrive? It's been 3 days (since Monday) - no news: 100% frustrating.",
    "I paid $40 for this; the refund was 10.50 EUR. Not great, not terrible.",
    "Call me at 555-1234 or write to me, e.g. at the shop #12.",
    "Two spaces after a period.  Like a typewriter.",
    "A snake_case name, an a*b product, a ~tilde and a `tick.",
    "Line one\nLine two\n\nA new paragraph.",
]


def visible_form(text: str) -> str:
    """What a reviewer reads for `text` (the page's innerText, normalised the same way): line endings as `\\n`, no
    trailing blanks on a line or at the end, a pair of spaces between words as one, no-break spaces as spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\u2003", "\t")
    text = text.replace("\u200b", "")
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return re.sub(r"(?<=\S)  (?=\S)", " ", "\n".join(lines).rstrip("\n"))


def write_project(folder: Path, dataset: str, workspace: str) -> Path:
    """A project in `folder` whose items are HOSTILE_TEXTS then PROSE (ids `t-000`, ...; JSON lines, so every byte
    of each text is kept), redaction off (the published text is the file's); returns its config path."""
    import json

    import yaml

    texts = HOSTILE_TEXTS + PROSE
    (folder / "items.jsonl").write_text("".join(json.dumps({"id": f"t-{n:03d}", "text": text}) + "\n"
                                                for n, text in enumerate(texts)))
    raw = {"name": "fidelity", "data": {"path": "items.jsonl"}, "fields": [{"name": "text", "title": "Text"}],
           "questions": [{"name": "q", "kind": "label", "labels": {"a": "first", "b": "second"}}],
           "redaction": {"enabled": False}, "argilla": {"dataset": dataset, "workspace": workspace},
           "run_dir": str(folder / "run")}
    path = folder / "fidelity.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def source_texts() -> dict[str, str]:
    """Item id -> source text of the items `write_project` writes."""
    return {f"t-{n:03d}": text for n, text in enumerate(HOSTILE_TEXTS + PROSE)}
