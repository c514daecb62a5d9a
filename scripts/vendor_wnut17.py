"""Build data/wnut17/sentences.jsonl from the WNUT-17 CoNLL files (CC-BY-4.0) of the workspace's `../shared/data`.

    python scripts/vendor_wnut17.py [SOURCE_DIR]

One JSON object per sentence: `id` (`<split>-<n>`), `split` (train / validation / test), `text` (the tokens joined
by single spaces), `tokens`, `ner_tags` (IOB2, as released), and `annotations`: one entry, the released adjudicated
annotation (`annotator: wnut17`), whose `entities` are character spans `{start, end, label}` into `text`.
Run at vendoring time only: the project never reads `../shared` at run time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspaces.shapes import spans_from_tags  # noqa: E402  (IOB2 -> character spans, as the project reads them)

FILES = {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"}


def sentences(path: Path):
    tokens, tags = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                yield tokens, tags
            tokens, tags = [], []
            continue
        token, tag = line.rsplit("\t", 1)
        tokens.append(token)
        tags.append(tag.strip())
    if tokens:
        yield tokens, tags


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "wnut17"
    rows = []
    for split, name in FILES.items():
        for n, (tokens, tags) in enumerate(sentences(source / name)):
            text = " ".join(tokens)
            entities = [{"start": a, "end": b, "label": c} for a, b, c in spans_from_tags(text, tags)]
            rows.append({"id": f"{split}-{n}", "split": split, "text": text, "tokens": tokens, "ner_tags": tags,
                         "annotations": [{"annotator": "wnut17", "entities": entities}]})
    out = ROOT / "data" / "wnut17" / "sentences.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} sentences, {sum(len(r['annotations'][0]['entities']) for r in rows)} entities -> {out}")


if __name__ == "__main__":
    main()
