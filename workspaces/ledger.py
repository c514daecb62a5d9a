"""The run's decision ledger: `ledger.jsonl`, append-only and hash-chained, so that an edit anywhere shows.

Every decision the loop takes about a label is one entry (one JSON line):

| kind       | written by    | key                 | data                                                        |
|------------|---------------|---------------------|-------------------------------------------------------------|
| `response` | `curate sync` | `item|annotator`    | the response as synced: status, values, `updated_at`        |
| `gate`     | `curate gate` | the decision's id   | the gate decision (history entry) as written                |
| `route`    | `curate triage` | `item|question`   | route, label, confidence, threshold, gate id, reason        |
| `push`     | `curate push` | `split|item`        | the row's sha256, source, where it went and the version     |
| `rebase`   | `curate verify --rebase` | `rebase` | the head of the chain it replaces and why                   |

An entry holds `seq` (0, 1, ...), `at` (UTC), `kind`, `key`, `data`, `prev` (the previous entry's `hash`; the
first entry's is 64 zeros) and `hash`: the sha256 of the entry without `hash`, in canonical JSON (sorted keys, no
spaces), which is also exactly the line's text. `ledger_head.json` keeps the count and the last hash, so a ledger
cut short or deleted is told from one never written. The dataset card carries the hash of the last decision before
the push (`decisions_head`), which commits to everything before it.

A decision is appended only when it differs from the last one with the same kind and key (a second `curate sync`
of unchanged responses appends nothing), and only onto an intact chain: `record` walks the chain first and refuses
(`LedgerError`, naming the first broken entry) to build on a broken one. `verify` walks it; `rebase` moves a broken
ledger aside (kept, with its sha256 in the new chain's first entry) and starts a new chain.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .errors import RunFileError
from .rundir import LEDGER, LEDGER_HEAD, _owner_only, file_sha256, locked, write_json

__all__ = ["GENESIS", "LedgerError", "LedgerHead", "Verification", "decisions_head", "head", "rebase", "record", "require_intact",
           "verify"]

GENESIS = "0" * 64
KINDS = ("response", "gate", "route", "push", "rebase")


class LedgerError(RunFileError):
    """The ledger is broken (an entry edited, removed or added out of order, or the file cut short or deleted):
    stages that write to it refuse until it is repaired or re-based (`curate verify CONFIG --rebase`)."""


@dataclass(frozen=True)
class LedgerHead:
    """The chain's head: how many entries, and the last one's hash (GENESIS for an empty chain)."""

    entries: int
    hash: str


@dataclass(frozen=True)
class Verification:
    """What `verify` found: `ok`, the entries read, the head, and (broken) the first broken entry and why."""

    ok: bool
    path: Path
    entries: int
    head: LedgerHead
    broken_at: Optional[int] = None  # the 1-based line of the first broken entry (None: intact, or the file is gone)
    reason: str = ""

    def describe(self) -> str:
        """One line: intact with its head, or where and why it is broken."""
        if self.ok:
            return f"{self.path}: intact, {self.entries} entries, head {self.head.hash}"
        where = f" at entry {self.broken_at}" if self.broken_at is not None else ""
        return f"{self.path}: broken{where}: {self.reason}"


def _plain(value: Any) -> Any:
    """`value` with NaN as None (JSON has no NaN), numpy scalars as Python ones, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        value = value.tolist()
        if isinstance(value, list):
            return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _canonical(entry: Any) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
                      allow_nan=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _run(run: Union[str, "os.PathLike[str]"]) -> Path:
    return Path(run)


def _stored_head(run: Path) -> Optional[LedgerHead]:
    path = LEDGER_HEAD.path(run)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return LedgerHead(entries=int(raw["entries"]), hash=str(raw["hash"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"{path} is unreadable ({exc}): run `curate verify CONFIG --rebase` to start a new chain "
                          "that records the old one") from None


def _walk(run: Path) -> tuple[Verification, dict[tuple[str, str], str]]:
    """Walk the chain; returns the verification and, per (kind, key), the last entry's data in canonical form."""
    path = LEDGER.path(run)
    stored = _stored_head(run)
    latest: dict[tuple[str, str], str] = {}
    if not path.exists():
        empty = LedgerHead(0, GENESIS)
        if stored is not None and stored.entries:
            return Verification(False, path, 0, empty, None,
                                f"the ledger is missing, but {LEDGER_HEAD.name} records {stored.entries} entries "
                                f"(head {stored.hash})"), latest
        return Verification(True, path, 0, empty), latest
    previous, count = GENESIS, 0

    def broken(line: int, why: str) -> tuple[Verification, dict[tuple[str, str], str]]:
        return Verification(False, path, count, LedgerHead(count, previous), line, why), latest

    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                text = line.rstrip("\n")
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError as exc:
                    return broken(line_number, f"not JSON ({exc.msg})")
                if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
                    return broken(line_number, "not a ledger entry (no hash)")
                if _canonical(entry) != text:
                    return broken(line_number, "not in canonical form (the line was edited)")
                stated = entry.pop("hash")
                if _sha(_canonical(entry)) != stated:
                    return broken(line_number, "its hash does not match its content (the entry was edited)")
                if entry.get("prev") != previous:
                    return broken(line_number, "its prev is not the previous entry's hash (an entry was removed, "
                                               "added or reordered before it)")
                if entry.get("seq") != count or entry.get("kind") not in KINDS:
                    return broken(line_number, f"seq {entry.get('seq')!r} / kind {entry.get('kind')!r} out of order")
                latest[(entry["kind"], str(entry.get("key")))] = _canonical(entry.get("data"))
                previous, count = stated, count + 1
        except UnicodeDecodeError as exc:
            return broken(count + 1, f"not UTF-8 text ({exc.reason})")
    found = LedgerHead(count, previous)
    if stored is None and count:
        return Verification(False, path, count, found, None,
                            f"{LEDGER_HEAD.name} is missing: the chain cannot be told complete"), latest
    if stored is not None and stored != found:
        return Verification(False, path, count, found, count + 1 if stored.entries > count else None,
                            f"the chain ends at entry {count} (hash {previous}) but {LEDGER_HEAD.name} records "
                            f"{stored.entries} entries (head {stored.hash}): the ledger was cut short or rewritten"
                            ), latest
    return Verification(True, path, count, found), latest


def verify(run: Union[str, "os.PathLike[str]"]) -> Verification:
    """Walk the chain of `<run>/ledger.jsonl` and check it against `ledger_head.json`."""
    run = _run(run)
    with locked(LEDGER.path(run)):
        return _walk(run)[0]


def head(run: Union[str, "os.PathLike[str]"]) -> LedgerHead:
    """The chain's head as `ledger_head.json` records it (0 entries and GENESIS when there is no ledger yet)."""
    return _stored_head(_run(run)) or LedgerHead(0, GENESIS)


def decisions_head(run: Union[str, "os.PathLike[str]"]) -> LedgerHead:
    """The entry count and hash up to the last entry that is not a `push` (GENESIS when there is none): what the
    dataset card carries. It commits to every decision (and earlier push) before it, and a push of unchanged rows
    appends nothing that moves it, so the card of a re-push is byte for byte the same."""
    run = _run(run)
    path = LEDGER.path(run)
    found = LedgerHead(0, GENESIS)
    if not path.exists():
        return found
    with locked(path), open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            entry = json.loads(line)
            if entry.get("kind") != "push":
                found = LedgerHead(number, str(entry.get("hash")))
    return found


def _refusal(found: Verification) -> LedgerError:
    return LedgerError(f"the decision ledger is broken: {found.describe()}. Nothing was appended. Restore the file, "
                       "or run `curate verify CONFIG --rebase` to start a new chain that records the old head")


def require_intact(run: Union[str, "os.PathLike[str]"]) -> LedgerHead:
    """The head of an intact chain; raises `LedgerError` naming the first broken entry otherwise."""
    found = verify(run)
    if not found.ok:
        raise _refusal(found)
    return found.head


def _append(run: Path, at_head: LedgerHead, entries: list[tuple[str, str, Any]]) -> LedgerHead:
    """Append (kind, key, data) entries after `at_head` (under the ledger's lock), fsync, then move the head."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous, seq, lines = at_head.hash, at_head.entries, []
    for kind, key, data in entries:
        body = {"seq": seq, "at": stamp, "kind": kind, "key": key, "data": data, "prev": previous}
        previous = _sha(_canonical(body))
        lines.append(_canonical({**body, "hash": previous}) + "\n")
        seq += 1
    with _owner_only(LEDGER.path(run)) as handle:
        handle.write("".join(lines).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    new = LedgerHead(seq, previous)
    write_json(LEDGER_HEAD.path(run), {"entries": new.entries, "hash": new.hash, "at": stamp})
    return new


def record(run: Union[str, "os.PathLike[str]"], kind: str, decisions: Iterable[tuple[str, Any]]) -> int:
    """Append each `(key, data)` decision of `kind` whose data differs from the last ledgered one with that key;
    returns how many were appended. Refuses (`LedgerError`) on a broken chain, appending nothing."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    run = _run(run)
    with locked(LEDGER.path(run)):
        found, latest = _walk(run)
        if not found.ok:
            raise _refusal(found)
        new = []
        for key, data in decisions:
            data = json.loads(_canonical(_plain(data)))  # what the line will hold (timestamps as text)
            if latest.get((kind, str(key))) != _canonical(data):
                latest[(kind, str(key))] = _canonical(data)
                new.append((kind, str(key), data))
        if new:
            _append(run, found.head, new)
    return len(new)


def rebase(run: Union[str, "os.PathLike[str]"], reason: str) -> tuple[Verification, LedgerHead]:
    """Start a new chain: the old ledger (if any) is renamed `ledger.rebased-<UTC time>.jsonl` and kept; the new
    chain's first entry (`rebase`) records the old head, what verify found and the kept file's sha256."""
    run = _run(run)
    path = LEDGER.path(run)
    with locked(path):
        found, _ = _walk(run)
        stored = _stored_head(run)
        kept = None
        if path.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            kept = path.with_name(f"ledger.rebased-{stamp}.jsonl")
            os.replace(path, kept)
        data = {"reason": reason, "old_head": None if stored is None else {"entries": stored.entries,
                                                                          "hash": stored.hash},
                "old_chain": {"intact": found.ok, "entries": found.entries, "hash": found.head.hash,
                              "broken_at": found.broken_at, "why": found.reason},
                "kept_as": kept.name if kept else None, "kept_sha256": file_sha256(kept) if kept else None}
        new = _append(run, LedgerHead(0, GENESIS), [("rebase", "rebase", data)])
    return found, new
