"""PII redaction before review: e-mail addresses, phone numbers, payment cards, IBANs, IP addresses and the config's
own patterns become stable tokens (`<EMAIL_1>`, `<PHONE_2>`, ...) before any text reaches Argilla or an LLM.

Recognizers (each candidate is checked, so look-alikes stay: order numbers, dates, amounts, versions, ids):

- `email` -> `<EMAIL_n>`: an address with a dotted domain and a letters-only TLD (`pkg@1.2.3` stays).
- `phone` -> `<PHONE_n>`: `phonenumbers.PhoneNumberMatcher` (Google's libphonenumber) with `VALID` leniency, for
  the config's `phone_regions` (numbers written with `+`/`00` in any region); a bare digit run counts only after a
  phone word ("call me on ..."), and a number glued to other digits (an amount, a decimal) never.
- `card` -> `<CARD_n>`: 13-19 digits, ungrouped or grouped like a card (4-4-4-4, 4-6-5), a card-network prefix and
  the Luhn check (`stdnum.luhn`).
- `iban` -> `<IBAN_n>`: country code, check digits and BBAN, spaced or not, checked by `stdnum.iban` (the
  country's format and mod-97).
- `ip` -> `<IP_n>`: IPv4 / IPv6 parsed by `ipaddress` (loopback and unspecified stay), not after `version`/`build`.
- the config's `redaction.patterns` -> `<NAME_n>`: every match of the regex; they win any overlap.

The same value gets the same token across the run: `redact_items` keeps the token map in the run dir
(`rundir.REDACTION`, owner-only, never published, pushed or logged) and only ever extends it, so a re-run gives
identical text (record upserts stay idempotent, the LLM label cache stays valid). `rundir.REDACTION_COUNTS` holds
what was replaced, by kind (counts only), for the report.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pandas as pd

from .config import RedactionConfig, ProjectConfig
from .errors import RunFileError
from .rundir import REDACTION, REDACTION_COUNTS, locked, read_json, write_json

__all__ = [
    "BUILTIN_KINDS",
    "Redactor",
    "Span",
    "find_pii",
    "read_redaction_counts",
    "read_tokens",
    "redact_items",
    "redacted_columns",
    "restore",
    "restore_items",
]

BUILTIN_KINDS = ("email", "phone", "card", "iban", "ip")
_TOKEN = re.compile(r"<([A-Z][A-Z0-9_]*)_([1-9][0-9]*)>")

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
# 13-19 digits, either ungrouped or in groups split by one kind of separator (checked below)
_CARD = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1), (4, 6, 5), (4, 6, 4), (4, 4, 5), (4, 4, 4, 2),
                (4, 4, 4, 4, 1), (4, 4, 4, 4, 2)}
# Visa, Mastercard (51-55, 2221-2720), Amex, Diners, Discover, JCB, UnionPay, Maestro
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3(?:0[0-5]|[68])"
                          r"|6(?:011|5|4[4-9])|35(?:2[89]|[3-8]\d)|62|5[06-9]|6\d")
_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,9}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\w)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Context words are anchored at a word boundary (searched with pos/endpos, so the boundary sees the text before the
# window): "server 192.168.10.24" is an address, "ver 10.0.0.1" a version; "hotel 2025550143" is not a phone number.
_VERSION_BEFORE = re.compile(r"\b(?:version|ver\.?|v\.|build|release|firmware|rev\.?)\s*$", re.IGNORECASE)
_PHONE_WORD = re.compile(r"\b(?:phone|call|tel|telephone|mobile|cell|whatsapp|sms|text me|fax|ring|dial|number is|"
                         r"contact me|reach me)\W{0,3}(?:\w+\W{1,3}){0,3}$", re.IGNORECASE)
_DIGITS7 = re.compile(r"(?:\d\D{0,3}){7}")
_BARE = re.compile(r"[\d.,]+")
_NUMBER_AROUND = re.compile(r"[.,]?\d|[.,/][A-Za-z0-9]")
_NUMBER_BEFORE = re.compile(r"\d[.,/]$|[A-Za-z]$")


@dataclass(frozen=True)
class Span:
    """One value found in a text: its kind and where it sits (`text[start:end]`)."""

    kind: str
    start: int
    end: int


def _emails(text: str) -> Iterable[tuple[int, int]]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield match.start(), match.end()


def _cards(text: str) -> Iterable[tuple[int, int]]:
    from stdnum import luhn

    for match in _CARD.finditer(text):
        raw = match.group(0)
        separators = set(re.sub(r"\d", "", raw))
        if len(separators) > 1:
            continue
        digits = re.sub(r"\D", "", raw)
        if separators and tuple(len(g) for g in re.split(r"[ -]", raw)) not in _CARD_GROUPS:
            continue
        if _CARD_PREFIX.match(digits) and luhn.is_valid(digits) and len(set(digits)) > 1:
            yield match.start(), match.end()


def _ibans(text: str) -> Iterable[tuple[int, int]]:
    from stdnum import iban

    for match in _IBAN.finditer(text):
        pieces = match.group(0).split(" ")
        for keep in range(len(pieces), 0, -1):  # the longest valid prefix (the regex may run into a next word)
            candidate = " ".join(pieces[:keep])
            if len(candidate.replace(" ", "")) >= 15 and iban.is_valid(candidate):
                yield match.start(), match.start() + len(candidate)
                break


def _ips(text: str) -> Iterable[tuple[int, int]]:
    for pattern, parse in ((_IPV4, ipaddress.IPv4Address), (_IPV6, ipaddress.IPv6Address)):
        for match in pattern.finditer(text):
            raw = match.group(0)
            if parse is ipaddress.IPv6Address and (raw.count(":") < 2 or len(raw.replace(":", "")) < 2):
                continue
            try:
                address = parse(raw)
            except ValueError:
                continue
            if address.is_loopback or address.is_unspecified:
                continue  # 127.0.0.1, ::1, 0.0.0.0 identify nobody
            if _VERSION_BEFORE.search(text, max(0, match.start() - 12), match.start()):
                continue
            yield match.start(), match.end()


def _phones(text: str, regions: tuple[str, ...]) -> Iterable[tuple[int, int]]:
    if not _DIGITS7.search(text):
        return
    import phonenumbers

    seen: set[tuple[int, int]] = set()
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            span = (match.start, match.end)
            if span in seen:
                continue
            seen.add(span)
            before = text[max(0, match.start - 40):match.start]
            if _NUMBER_AROUND.match(text, match.end) or _NUMBER_BEFORE.search(before):
                continue  # part of a longer number (an amount, a decimal, an id)
            if _BARE.fullmatch(match.raw_string) and not _PHONE_WORD.search(text, max(0, match.start - 40), match.start):
                continue  # a bare digit run is an order number or an id unless the text calls it a phone number
            yield span


@functools.lru_cache(maxsize=64)
def _patterns(spec_json: str) -> tuple[RedactionConfig, list[tuple[str, re.Pattern[str]]]]:
    spec = RedactionConfig.model_validate_json(spec_json)
    return spec, [(p.name, re.compile(p.regex)) for p in spec.patterns]


def _find_cached(spec_json: str, text: str) -> tuple[Span, ...]:
    """`_find` of `text`, skipping texts no built-in recognizer can match (no digit, no `@`, fewer than two `:`)
    without a look-up: only texts that may hold a value are cached, so the cache stays small on plain prose."""
    _, patterns = _patterns(spec_json)
    if not patterns and "@" not in text and text.count(":") < 2 and not _ANY_DIGIT.search(text):
        return ()
    return _find(spec_json, text)


_ANY_DIGIT = re.compile(r"\d")


@functools.lru_cache(maxsize=8192)
def _find(spec_json: str, text: str) -> tuple[Span, ...]:
    spec, patterns = _patterns(spec_json)
    candidates: list[tuple[str, int, int]] = []
    for name, pattern in patterns:  # the config's own patterns first: the user knows their data
        candidates += [(name, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
    finders = {"email": _emails, "iban": _ibans, "card": _cards, "ip": _ips,
               "phone": lambda t: _phones(t, tuple(spec.phone_regions))}
    for kind in ("email", "iban", "card", "ip", "phone"):  # priority on overlap: this order
        if kind in spec.kinds:
            candidates += [(kind, start, end) for start, end in finders[kind](text)]
    taken: list[Span] = []
    for kind, start, end in candidates:
        if all(end <= s.start or start >= s.end for s in taken):
            taken.append(Span(kind, start, end))
    return tuple(sorted(taken, key=lambda s: s.start))


def find_pii(text: str, spec: Optional[RedactionConfig] = None) -> list[Span]:
    """Every value of `text` that `spec` (default: the default kinds) redacts, in text order, never overlapping."""
    spec = spec or RedactionConfig()
    return list(_find_cached(spec.model_dump_json(), text))


def _token_name(kind: str) -> str:
    return kind.upper()


@dataclass
class Redactor:
    """Replaces found values by stable tokens, extending `tokens` (token -> original value) as it goes.

    Input: texts. Output: the texts with each value replaced by its token; `counts` (occurrences per kind) and
    `added` (tokens new in this redactor) say what happened.
    """

    spec: RedactionConfig = field(default_factory=RedactionConfig)
    tokens: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    used: dict[str, set[str]] = field(default_factory=dict)  # kind -> distinct tokens used
    added: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._spec_json = self.spec.model_dump_json()
        self._by_value: dict[tuple[str, str], str] = {}
        self._next: Counter = Counter()
        for token, value in self.tokens.items():
            name, number = _TOKEN.fullmatch(token).groups()  # type: ignore[union-attr]
            self._by_value[(name, value)] = token
            self._next[name] = max(self._next[name], int(number))

    def token(self, kind: str, value: str) -> str:
        """The token of `value` as a `kind` (a new one, numbered after the kind's last, the first time)."""
        name = _token_name(kind)
        token = self._by_value.get((name, value))
        if token is None:
            self._next[name] += 1
            token = f"<{name}_{self._next[name]}>"
            self._by_value[(name, value)] = token
            self.tokens[token] = value
            self.added.append(token)
        return token

    def redact(self, text: str) -> str:
        """`text` with every value found replaced by its token."""
        spans = _find_cached(self._spec_json, text)
        if not spans:
            return text
        parts, last = [], 0
        for span in spans:
            token = self.token(span.kind, text[span.start:span.end])
            parts += [text[last:span.start], token]
            last = span.end
            self.counts[span.kind] += 1
            self.used.setdefault(span.kind, set()).add(token)
        parts.append(text[last:])
        return "".join(parts)


def restore(text: str, tokens: dict[str, str]) -> str:
    """`text` with every token of `tokens` mapped back to its original value (unknown tokens stay)."""
    return _TOKEN.sub(lambda m: tokens.get(m.group(0), m.group(0)), text)


def restore_items(config: ProjectConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the tokens of its text columns mapped back through the run's token map (`hub.restore_redacted`)."""
    tokens = read_tokens(config.run_path)
    frame = frame.copy()
    for column in redacted_columns(config):
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: restore(v, tokens) if isinstance(v, str) else v)
    return frame


def read_tokens(run: Any) -> dict[str, str]:
    """The run's token map (token -> original value); empty when nothing was redacted yet.

    Raises:
        RunFileError: the map is corrupt.
    """
    payload = read_json(run, REDACTION, required=False)
    if payload is None:
        return {}
    tokens = payload.get("tokens") if isinstance(payload, dict) else None
    if not isinstance(tokens, dict) or not all(isinstance(k, str) and _TOKEN.fullmatch(k) and isinstance(v, str)
                                               for k, v in tokens.items()):
        raise RunFileError(f"{REDACTION.path(run)}: {REDACTION.name} is corrupt (expected {{'tokens': {{'<KIND_n>': "
                           "value}}}); restore it from a backup: without it redacted values cannot be restored and "
                           "a new map would number tokens differently")
    return tokens


def redacted_columns(config: ProjectConfig) -> list[str]:
    """The data columns redaction applies to: the text shown to reviewers and the LLM (fields, preference
    responses); never ids, labels or metadata."""
    columns = [f.source_column for f in config.fields]
    if config.preference is not None:
        columns += list(config.preference.response_columns)
    return list(dict.fromkeys(columns))


def _apply(frame: pd.DataFrame, columns: list[str], redactor: Redactor) -> tuple[pd.DataFrame, int]:
    frame = frame.copy()
    touched = pd.Series(False, index=frame.index)
    for column in columns:
        if column not in frame.columns:
            continue
        before = frame[column]
        after = before.map(lambda v: redactor.redact(v) if isinstance(v, str) else v)
        touched |= (after != before) & before.map(lambda v: isinstance(v, str))
        frame[column] = after
    return frame, int(touched.sum())


def redact_items(config: ProjectConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (`items.load_items` output) with its text columns redacted, the run's token map extended.

    New tokens are numbered under a lock on the map, after re-reading it, so two stages running at once agree.
    """
    spec = config.redaction
    run = config.run_path
    columns = redacted_columns(config)
    redactor = Redactor(spec, read_tokens(run))
    result, items = _apply(frame, columns, redactor)
    if redactor.added:
        path = REDACTION.path(run)
        with locked(path):
            redactor = Redactor(spec, read_tokens(run))  # another stage may have added tokens meanwhile
            result, items = _apply(frame, columns, redactor)
            if redactor.added:
                write_json(path, {"tokens": redactor.tokens})  # private: owner-only (rundir.REDACTION)
    _write_counts(config, redactor, items, len(frame))
    return result


def _write_counts(config: ProjectConfig, redactor: Redactor, items: int, total: int) -> None:
    """Record what was redacted in the items of the config's data file (counts only, no value)."""
    run = config.run_path
    path = REDACTION_COUNTS.path(run)
    if not redactor.counts and not path.parent.is_dir():
        return  # nothing redacted and no run yet: leave no trace of a mere look at the data
    entry = {"items": total, "items_redacted": items,
             "by_kind": {kind: {"values": len(redactor.used.get(kind, ())), "occurrences": int(n)}
                         for kind, n in sorted(redactor.counts.items())}}
    with locked(path):
        current = read_json(run, REDACTION_COUNTS, required=False)
        sources = dict(current.get("sources", {})) if isinstance(current, dict) else {}
        if sources.get(str(config.data.path)) == entry:
            return
        sources[str(config.data.path)] = entry
        write_json(path, {"kinds": list(config.redaction.kinds),
                          "patterns": [p.name for p in config.redaction.patterns], "sources": sources})


def read_redaction_counts(config: ProjectConfig) -> Optional[dict[str, Any]]:
    """What redaction replaced in the config's items (`{items, items_redacted, by_kind}`); None when not recorded."""
    payload = read_json(config.run_path, REDACTION_COUNTS, required=False)
    if not isinstance(payload, dict):
        return None
    entry = payload.get("sources", {}).get(str(config.data.path))
    return entry if isinstance(entry, dict) else None
