"""Question shapes: what a question's value is, how a stored value is read back, how votes become a human label,
and how far two values are apart.

A shape is one small object per question kind, as a scikit-learn estimator is one object per model: stages ask the
shape (`shape_of(question)`) instead of assuming a single label. The shape is core (no Argilla, no `datasets`); each
stage keeps its own room and maps the shape's plain facts onto its tool (an Argilla question, a Hub feature).

Stored values are text, as `annotations.parquet` keeps them: a label `"yes"`, a rating `"3"`, a multi-label answer a
JSON list `'["anger", "joy"]'`. `Shape.parse` turns one back into the question's value type, or raises
`ShapeValueError` naming the question and the value: nothing is guessed.

Shapes:
- `LabelShape` (`label`): one label; the human label is the strict majority; nominal distance.
- `RatingShape` (`rating`): an integer on the scale; the lower median (ordinal) or the strict majority (nominal).
- `TextShape` (`text`): free text, never voted on.
- `MultiLabelShape` (`multi_label`): a set of labels, within `min`/`max` picks; the human label is the per-label
  strict majority (a label is in when more than half of the votes hold it); distance is MASI (Passonneau 2006).
- `SpanShape` (`span`): non-overlapping character spans with labels in one text field; the human label is the spans
  a strict majority marked the same; distance is 1 - exact span F1.

Example::

    from workspaces.shapes import shape_of
    shape = shape_of(question)                 # a QuestionConfig
    votes = [shape.parse(v) for v in stored]   # stored text -> values, checked
    shape.consensus(votes).label
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence, Union

from .errors import ConfigError

if TYPE_CHECKING:  # the config module imports nothing from here
    from .config import QuestionConfig

__all__ = ["LabelShape", "MultiLabelShape", "PickCountError", "RatingShape", "Shape", "ShapeValueError", "SpanShape",
           "TextShape", "iob2_names", "iob2_tags", "masi_distance", "overlapping_spans", "shape_of", "span_f1", "spans_from_tags",
           "strict_majority", "whitespace_tokens"]

Value = Union[str, int, tuple[str, ...]]


class ShapeValueError(ConfigError):
    """A stored or suggested value does not fit its question (an unknown label, a rating off the scale, too many
    picks); the message names the question and the value."""


class PickCountError(ShapeValueError):
    """A well-formed multi-label answer with fewer than `min` or more than `max` labels: a rule the Argilla server
    does not enforce, so a reviewer can break it. Stages leave such a response out and count it."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class Shape:
    """The contract every question shape implements.

    Attributes:
        kind: the config's `kind` this shape implements.
        question: the question it serves.
    """

    kind: ClassVar[str]

    def __init__(self, question: "QuestionConfig") -> None:
        self.question = question

    @property
    def voted(self) -> bool:
        """Whether responses are voted on (False for free text)."""
        return True

    def parse(self, stored: Any) -> Value:
        """A stored value (text) as the question's value type; `ShapeValueError` when it does not fit."""
        raise NotImplementedError

    def dump(self, value: Value) -> str:
        """The stored text of a value (the inverse of `parse`)."""
        return str(value)

    def consensus(self, votes: Sequence[Any]) -> "HumanVote":
        """The humans' label of one item from its votes (one per annotator; stored text or values)."""
        raise NotImplementedError

    def distance(self, a: Value, b: Value) -> float:
        """How far two values are apart, in [0, 1] (0: the same)."""
        return 0.0 if a == b else 1.0

    @property
    def labelable(self) -> bool:
        """Whether a labeler (the student, the LLM) answers it: every voted shape."""
        return self.voted

    @property
    def llm_answers(self) -> bool:
        """Whether `curate label` can ask the LLM (a prompt per question, or a yes/no per label)."""
        return self.labelable

    @property
    def single_choice(self) -> bool:
        """Whether a value is one of the question's `allowed_values` (so that Cohen's kappa, a confusion matrix and a
        probability distribution over the values apply)."""
        return True

    def canonical(self, stored: Any) -> Optional[str]:
        """The stored text of a stored value in this shape's one spelling (tags in the labels' order, spans by
        offset), or None when it does not fit (the caller counts it). Label and rating text is already canonical."""
        if _missing(stored):
            return None
        if self.single_choice:
            return str(stored)
        try:
            return self.dump(self.parse(stored))
        except ShapeValueError:
            return None

    def decide(self, probabilities: dict[str, float], thresholds: Optional[dict[str, float]] = None
               ) -> tuple[Value, float]:
        """A labeler's decision from its probabilities over `allowed_values`: the likeliest value (the first in the
        question's order on a tie) and its probability. `thresholds` is for shapes that decide per label."""
        values = [str(v) for v in self.question.allowed_values]
        best = max(values, key=lambda v: float(probabilities.get(v, 0.0)))  # max keeps the first of equals
        return self.parse(best), float(probabilities.get(best, 0.0))

    def _json_list(self, stored: Any, what: str) -> list[Any]:
        """A stored list value: JSON text, a list/tuple, or an array; `ShapeValueError` naming `what` otherwise."""
        value: Any = stored
        if isinstance(stored, str):
            try:
                value = json.loads(stored)
            except json.JSONDecodeError:
                raise self._error(stored, f"is not a JSON list of {what}") from None
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            raise self._error(stored, f"is not a list of {what}")
        return list(value)

    def _error(self, stored: Any, why: str) -> ShapeValueError:
        return ShapeValueError(f"question {self.question.name!r}: {stored!r} {why}")


class HumanVote:
    """What `Shape.consensus` gives: the label (None: none), the number of votes, the share of votes equal to the
    label, and whether there were votes but no majority. `workspaces.votes.HumanLabel` is built from it."""

    __slots__ = ("label", "votes", "agreement", "no_majority")

    def __init__(self, label: Optional[Value], votes: int, agreement: Optional[float], no_majority: bool = False):
        self.label, self.votes, self.agreement, self.no_majority = label, votes, agreement, no_majority


def strict_majority(values: Sequence[Any]) -> Optional[Any]:
    """The value more than half of `values` share, or None (ties and pluralities are no majority)."""
    if not values:
        return None
    value, count = Counter(values).most_common(1)[0]
    return value if count * 2 > len(values) else None


def _strict_majority(votes: Sequence[Any]) -> HumanVote:
    value = strict_majority(votes)
    if value is None:
        return HumanVote(None, len(votes), None, no_majority=True)
    return HumanVote(value, len(votes), list(votes).count(value) / len(votes))


class LabelShape(Shape):
    """One label of `labels`; the human label is the strict majority."""

    kind = "label"

    def parse(self, stored: Any) -> Value:
        text = str(stored)
        if text not in (self.question.labels or {}):
            raise self._error(stored, f"is not one of {list(self.question.labels or {})}")
        return text

    def consensus(self, votes: Sequence[Value]) -> HumanVote:
        return _strict_majority(votes) if votes else HumanVote(None, 0, None)


class RatingShape(Shape):
    """An integer of `values`; the human label is the lower median (ordinal and above) or the strict majority."""

    kind = "rating"

    def parse(self, stored: Any) -> Value:
        try:
            number = float(stored)
        except (TypeError, ValueError):
            raise self._error(stored, "is not a rating") from None
        if not number.is_integer() or int(number) not in (self.question.values or []):
            raise self._error(stored, f"is not one of {list(self.question.values or [])}")
        return int(number)

    def consensus(self, votes: Sequence[Value]) -> HumanVote:
        if not votes:
            return HumanVote(None, 0, None)
        numbers = [int(float(v)) for v in votes]
        if self.question.alpha_level.value == "nominal":
            return _strict_majority(numbers)
        label = sorted(numbers)[(len(numbers) - 1) // 2]
        return HumanVote(label, len(numbers), numbers.count(label) / len(numbers))

    def distance(self, a: Value, b: Value) -> float:
        scale = self.question.values or [0, 1]
        return abs(int(a) - int(b)) / max(1, max(scale) - min(scale))


class TextShape(Shape):
    """Free text: kept as provenance, never voted on."""

    kind = "text"

    @property
    def voted(self) -> bool:
        return False

    def parse(self, stored: Any) -> Value:
        return str(stored)

    def consensus(self, votes: Sequence[Value]) -> HumanVote:
        return HumanVote(None, len(votes), None)


def masi_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """MASI distance of two label sets (Passonneau 2006): 1 - Jaccard x monotonicity, where monotonicity is 1 for
    equal sets, 2/3 when one holds the other, 1/3 when they only overlap and 0 when they are disjoint. Two empty
    sets are equal (distance 0)."""
    x, y = set(a), set(b)
    if x == y:
        return 0.0
    common = len(x & y)
    if not common:
        return 1.0
    monotonicity = 2 / 3 if (x <= y or y <= x) else 1 / 3
    return 1.0 - common / len(x | y) * monotonicity


class MultiLabelShape(Shape):
    """A set of labels of `labels`, with between `min` and `max` picks.

    Values are sorted tuples (hashable, in one canonical order); stored as a JSON list. The human label keeps each
    label that more than half of the votes hold (the per-label strict majority); a label set can be empty. Its
    agreement is the share of votes equal to that set. A majority set with fewer than `min` labels is no majority.
    """

    kind = "multi_label"

    def parse(self, stored: Any) -> Value:
        picks = self._json_list(stored, "labels")
        if not all(isinstance(p, str) for p in picks):
            raise self._error(stored, "is not a list of labels")
        labels = self.question.labels or {}
        unknown = sorted({p for p in picks if p not in labels})
        if unknown:
            raise self._error(stored, f"holds unknown label(s) {unknown}; the labels are {list(labels)}")
        if len(set(picks)) != len(picks):
            raise self._error(stored, "names a label more than once")
        low, high = self.question.min, self.question.max
        if low is not None and len(picks) < low:
            raise PickCountError(f"question {self.question.name!r}: {stored!r} has {len(picks)} label(s); at least "
                                 f"{low} must be picked")
        if high is not None and len(picks) > high:
            raise PickCountError(f"question {self.question.name!r}: {stored!r} has {len(picks)} label(s); at most "
                                 f"{high} may be picked")
        order = {label: i for i, label in enumerate(labels)}
        return tuple(sorted(picks, key=order.__getitem__))

    def dump(self, value: Value) -> str:
        return json.dumps(list(value), ensure_ascii=False)

    @property
    def single_choice(self) -> bool:
        return False

    def decide(self, probabilities: dict[str, float], thresholds: Optional[dict[str, float]] = None
               ) -> tuple[Value, float]:
        """A labeler's item-level decision from one probability per label: the labels whose p reaches their
        threshold (0.5 unless `thresholds` says otherwise), topped up with the likeliest others to reach `min` and
        cut to the likeliest `max`; and its confidence, the least sure of the label decisions (max(p, 1 - p)), so
        that an item counts as sure only when **every** label's decision is."""
        labels = list(self.question.labels or {})
        p = {label: float(probabilities.get(label, 0.0)) for label in labels}
        cut = thresholds or {}
        picked = [label for label in labels if p[label] >= cut.get(label, 0.5)]
        ranked = sorted(labels, key=lambda label: -p[label])
        low, high = self.question.min or 0, self.question.max
        for label in ranked:
            if len(picked) >= low:
                break
            if label not in picked:
                picked.append(label)
        if high is not None and len(picked) > high:
            picked = [label for label in ranked if label in picked][:high]
        chosen = set(picked)
        sure = min((p[label] if label in chosen else 1.0 - p[label]) for label in labels)
        return tuple(label for label in labels if label in chosen), sure

    def consensus(self, votes: Sequence[Value]) -> HumanVote:
        if not votes:
            return HumanVote(None, 0, None)
        votes = [self.parse(v) for v in votes]
        held = Counter(label for vote in votes for label in set(vote))
        order = list(self.question.labels or {})
        label = tuple(name for name in order if held[name] * 2 > len(votes))
        if len(label) < (self.question.min or 0):  # the majority holds fewer labels than an answer needs
            return HumanVote(None, len(votes), None, no_majority=True)
        return HumanVote(label, len(votes), sum(tuple(v) == label for v in votes) / len(votes))

    def distance(self, a: Value, b: Value) -> float:
        return masi_distance(a, b)  # type: ignore[arg-type]


Span = tuple[int, int, str]  # start, end (exclusive), label: character offsets into the question's field


def span_f1(a: Sequence[Span], b: Sequence[Span]) -> float:
    """Exact-match F1 of two span sets (same start, end and label); 1 for two empty sets."""
    x, y = set(a), set(b)
    if not x and not y:
        return 1.0
    return 2 * len(x & y) / (len(x) + len(y))


def overlapping_spans(a: Sequence[Span], b: Sequence[Span]) -> int:
    """How many spans of `a` overlap a span of `b` with the same label (the count behind overlap F1)."""
    return sum(any(start < end_b and start_b < end and label == label_b for start_b, end_b, label_b in b)
               for start, end, label in a)


def iob2_names(question: "QuestionConfig") -> list[str]:
    """The IOB2 tag names of a span question: `O`, then `B-<label>`, `I-<label>` per label."""
    return ["O", *[f"{prefix}-{label}" for label in question.labels or {} for prefix in ("B", "I")]]


def whitespace_tokens(text: str) -> list[tuple[int, int]]:
    """The `[start, end)` offsets of the whitespace-separated tokens of `text`."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def iob2_tags(text: str, spans: Any) -> list[str]:
    """IOB2 tags of the whitespace tokens of `text` for character `spans` ((start, end, label)): a token is in a
    span when they overlap; the span's first token is `B-`."""
    tags = []
    previous: Optional[tuple[int, int, str]] = None
    for start, end in whitespace_tokens(text):
        inside = next((s for s in spans if s[0] < end and start < s[1]), None)
        tags.append("O" if inside is None else f"{'I' if inside == previous else 'B'}-{inside[2]}")
        previous = inside
    return tags


def spans_from_tags(text: str, tags: Sequence[str]) -> tuple[Span, ...]:
    """Character spans from IOB2 tags of the whitespace tokens of `text` (an `I-` without its `B-` starts a span,
    as seqeval reads it): the inverse of `iob2_tags` for spans on token boundaries."""
    spans: list[Span] = []
    current: Optional[list[Any]] = None
    for (start, end), tag in zip(whitespace_tokens(text), tags):
        kind, _, label = str(tag).partition("-")
        if kind == "I" and current is not None and current[2] == label:
            current[1] = end
            continue
        if current is not None:
            spans.append((current[0], current[1], current[2]))
        current = [start, end, label] if kind in ("B", "I") else None
    if current is not None:
        spans.append((current[0], current[1], current[2]))
    return tuple(spans)


class SpanShape(Shape):
    """Entity spans in one text field (`field`): character offsets `[start, end)` with a label of `labels`; spans may
    not overlap (Argilla's default). An answer with no span says "no entity here" and is a valid answer.

    Values are sorted tuples of `(start, end, label)`; stored as a JSON list of `{"start", "end", "label"}`
    objects, Argilla's own span response shape. The human label keeps each span that more than half of the votes
    marked with the same offsets and label; distance is 1 - exact-match span F1. `check_text` refuses a span outside
    the text; `parse` refuses unknown labels, broken offsets and overlaps.
    """

    kind = "span"

    @property
    def single_choice(self) -> bool:
        return False

    @property
    def llm_answers(self) -> bool:
        return False  # no span prompt yet: the CRF student labels spans

    def parse(self, stored: Any) -> Value:
        spans = self._json_list(stored, "spans")
        labels = self.question.labels or {}
        out = []
        for span in spans:
            if isinstance(span, dict):
                start, end, label = span.get("start"), span.get("end"), span.get("label")
            elif isinstance(span, (list, tuple)) and len(span) == 3:
                start, end, label = span
            else:
                raise self._error(stored, f"holds {span!r}, not a span (start, end, label)")
            if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) \
                    or not isinstance(end, int) or not 0 <= start < end:
                raise self._error(stored, f"holds a span with offsets {start!r}..{end!r} (need 0 <= start < end)")
            if label not in labels:
                raise self._error(stored, f"holds a span with unknown label {label!r}; the labels are {list(labels)}")
            out.append((start, end, str(label)))
        out.sort()
        for (a_start, a_end, a_label), (b_start, b_end, b_label) in zip(out, out[1:]):
            if b_start < a_end:
                raise self._error(stored, f"has overlapping spans {a_start}..{a_end} ({a_label}) and "
                                          f"{b_start}..{b_end} ({b_label}); this question allows no overlap")
        return tuple(out)

    def dump(self, value: Value) -> str:
        return json.dumps([{"start": a, "end": b, "label": c} for a, b, c in value], ensure_ascii=False)  # type: ignore[misc]

    def check_text(self, value: Value, text: str) -> None:
        """Raise `ShapeValueError` when a span of `value` ends past `text`."""
        for start, end, label in value:  # type: ignore[misc]
            if end > len(text):
                raise self._error(self.dump(value), f"has the span {start}..{end} ({label}) outside the text of "
                                                    f"{len(text)} characters")

    def consensus(self, votes: Sequence[Value]) -> HumanVote:
        if not votes:
            return HumanVote(None, 0, None)
        votes = [self.parse(v) for v in votes]
        marked = Counter(span for vote in votes for span in set(vote))
        label = tuple(sorted(span for span, n in marked.items() if n * 2 > len(votes)))
        return HumanVote(label, len(votes), sum(tuple(v) == label for v in votes) / len(votes))

    def distance(self, a: Value, b: Value) -> float:
        return 1.0 - span_f1(a, b)  # type: ignore[arg-type]


_SHAPES: dict[str, type[Shape]] = {shape.kind: shape for shape in (LabelShape, RatingShape, TextShape,
                                                                    MultiLabelShape, SpanShape)}


def shape_of(question: "QuestionConfig") -> Shape:
    """The shape that serves `question` (by its `kind`)."""
    kind = getattr(question.kind, "value", question.kind)
    return _SHAPES[kind](question)
