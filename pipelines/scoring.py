"""Parsing an LLM's JSON answer and turning its own token log-probabilities into probabilities over allowed labels.

Pure functions (no model, no Distilabel), so every failure shape is unit-tested directly:

- `parse_answer` reads `{"<key>": "<label>"}` from a generation: `None` generation -> model error, unparseable
  text -> broken JSON, a value outside the label set -> off-label answer. Each raises `AnswerError` with the reason.
- `label_probabilities` walks the generated tokens to the position where the label starts and reads, from the top-k
  alternatives the model had there, the probability mass of each allowed label (renormalised over the label set).
  See pipelines/README.md, section 'Confidence'.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["AnswerError", "Candidates", "label_probabilities", "parse_answer"]

Candidates = Sequence[Dict[str, Any]]  # one generated position: [{"token": str, "logprob": float | None}, ...]


class AnswerError(ValueError):
    """Why an answer could not be turned into a label (the `error` of a failed row)."""


def _fold(labels: Sequence[str]) -> Any:
    """Case-insensitive matching when the label set stays unambiguous that way, exact matching otherwise."""
    folded = {label.strip().casefold() for label in labels}
    if len(folded) == len(labels):
        return lambda text: text.casefold()
    return lambda text: text


def _extract_object(text: str) -> Optional[Dict[str, Any]]:
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_answer(generation: Optional[str], labels: Sequence[str], *, key: str = "label",
                 lenient: bool = False) -> tuple[str, Dict[str, Any]]:
    """The label a generation answers, and the whole JSON object.

    Args:
        generation: the model's text; `None` when the model call failed.
        labels: the allowed labels.
        key: the JSON key holding the label.
        lenient: accept a JSON object cut short after a complete `"<key>": "<value>"` (e.g. a rationale that ran
            out of tokens); the other complete string fields are kept.

    Raises:
        AnswerError: `model error: ...`, `broken JSON: ...` or `off-label answer: ...`.
    """
    if generation is None:
        raise AnswerError("model error: the LLM returned no generation")
    text = generation.strip()
    if not text:
        raise AnswerError("model error: empty generation")
    obj = _extract_object(text)
    if obj is None and lenient:
        match = re.search(rf'"{re.escape(key)}"\s*:\s*"([^"]*)"', text)
        if match:
            obj = {key: match.group(1)}
            for field in re.finditer(r'"(\w+)"\s*:\s*"((?:[^"\\]|\\.)*)', text):
                obj.setdefault(field.group(1), field.group(2))
    if obj is None:
        raise AnswerError(f"broken JSON: no JSON object in {text[:80]!r}")
    if key not in obj:
        raise AnswerError(f"broken JSON: no {key!r} key in {text[:80]!r}")
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(int(value)) if float(value).is_integer() else str(value)
    if not isinstance(value, str):
        raise AnswerError(f"off-label answer: {value!r} is not a string (allowed: {', '.join(labels)})")
    if value in labels:
        return value, obj
    fold = _fold(labels)
    matches = [label for label in labels if fold(label.strip()) == fold(value.strip())]
    if len(matches) == 1:
        return matches[0], obj
    raise AnswerError(f"off-label answer: {value[:40]!r} (allowed: {', '.join(labels)})")


def _align(text: str, steps: Sequence[Candidates]) -> List[tuple[int, int, Dict[str, Any]]]:
    """For each generated position: the span of `text` it produced and the candidate that was sampled."""
    spans: List[tuple[int, int, Dict[str, Any]]] = []
    pos = 0
    for index, candidates in enumerate(steps):
        if pos >= len(text):
            break
        best: Optional[Dict[str, Any]] = None
        for candidate in candidates:
            token = candidate.get("token") or ""
            if token and text.startswith(token, pos) and (best is None or len(token) > len(best["token"])):
                best = candidate
        if best is None:
            break  # the sampled token is not among the alternatives: the walk can only use what came before
        spans.append((pos, pos + len(best["token"]), best))
        pos += len(best["token"])
    return spans


def label_probabilities(generation: str, steps: Optional[Sequence[Optional[Candidates]]], labels: Sequence[str],
                        answer: str, *, key: str = "label") -> Dict[str, float]:
    """Probabilities over `labels` from the model's own top-k log-probabilities (they sum to 1).

    The generated tokens are aligned with the text; at the token where the answer's value starts, every alternative
    that spells the beginning of a label adds its probability to that label. When several labels share the sampled
    prefix (e.g. `card_arrival` / `card_linking` after `card`), the walk follows the sampled path to the next token,
    multiplying by the sampled token's probability, until only the answer is left. An alternative that is the prefix
    of several labels the model did not go on to write is split evenly among them. Labels the model gave no top-k
    mass get 0. The result is renormalised over the label set.

    Args:
        generation: the generated text.
        steps: per generated token, its top-k alternatives `{"token", "logprob"}` (the sampled one included).
        labels: the allowed labels.
        answer: the label parsed from `generation` (see `parse_answer`).
        key: the JSON key holding the label.

    Raises:
        AnswerError: `no confidence: ...` when the log-probabilities are missing or do not cover the answer.
    """
    if not steps or any(step is None for step in steps):
        raise AnswerError("no confidence: the LLM returned no logprobs (the backend must support top_logprobs)")
    match = re.search(rf'"{re.escape(key)}"\s*:\s*"', generation)
    if match is None:
        raise AnswerError(f"no confidence: the answer is not written as \"{key}\": \"...\" in the generation")
    start = match.end()
    spans = _align(generation, steps)  # type: ignore[arg-type]
    first = next((i for i, (s, e, _) in enumerate(spans) if s <= start < e), None)
    if first is None:
        raise AnswerError("no confidence: the generated token at the answer is not among the returned top logprobs "
                          "(raise llm.top_logprobs, or use a backend that returns the sampled token)")
    fold = _fold(labels)
    mass = {label: 0.0 for label in labels}
    alive = list(labels)
    consumed = ""
    log_path = 0.0
    lead = generation[spans[first][0]:start]

    def consistent(piece: str, label: str) -> bool:
        rest = fold(label[len(consumed):]) if len(consumed) <= len(label) else None
        if rest is None:
            return False
        piece = fold(piece)
        return rest.startswith(piece) or piece.startswith(rest + '"')

    for index in range(first, len(spans)):
        _, _, sampled = spans[index]
        prefix = lead if index == first else ""
        sampled_piece = sampled["token"][len(prefix):]
        for candidate in steps[index] or []:  # type: ignore[index]
            token, logprob = candidate.get("token") or "", candidate.get("logprob")
            if candidate is sampled or token == sampled["token"] or logprob is None:
                continue
            if not token.startswith(prefix) or not token[len(prefix):]:
                continue
            targets = [label for label in alive if consistent(token[len(prefix):], label)]
            for label in targets:
                mass[label] += math.exp(log_path + logprob) / len(targets)
        if sampled.get("logprob") is None:
            raise AnswerError("no confidence: the sampled token has no logprob")
        log_path += float(sampled["logprob"])
        alive = [label for label in alive if consistent(sampled_piece, label)]
        consumed += sampled_piece.split('"')[0] if '"' in sampled_piece else sampled_piece
        if answer not in alive:
            raise AnswerError(f"no confidence: the generated tokens do not spell the answer {answer!r}")
        if len(alive) == 1:
            mass[answer] += math.exp(log_path)
            total = sum(mass.values())
            return {label: value / total for label, value in mass.items()}
    raise AnswerError("no confidence: the logprobs end before the answer is decided")
