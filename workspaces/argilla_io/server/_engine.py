"""A SQL-backed search engine for an embedded Argilla 2.8 server (no Elasticsearch/OpenSearch).

Argilla keeps every record, response, suggestion and vector in its SQL database and mirrors them into
Elasticsearch/OpenSearch only to search them. This engine drops the mirror: the write hooks are no-ops and every read
is answered from the server's own database with the semantics of ``argilla_server.search_engine.commons`` (the
Elasticsearch implementation). It runs on SQLite (JSON1: ``json_each``, ``json_extract``) and on PostgreSQL (``json``
operators, ``json_array_elements`` joined ``LATERAL``); ``_Dialect`` holds the only SQL that differs between them.

Text search is a token match like Elasticsearch's ``standard`` analyzer: words (Unicode letters/digits, inner
apostrophes and dots kept) lower-cased with Unicode case folding, so ``apple`` does not find "Pineapple" and
``ünïcode`` finds "Ünïcode". On SQLite the tokenizer is Python's (a deterministic SQL function registered on each
connection); on PostgreSQL it is full-text search with the ``simple`` configuration (no stemming, no stop words;
Unicode case folding needs a UTF-8 database with a non-``C`` ctype, as the local cluster is created). Terms are
whitespace separated and all must match (``default_operator: AND``), a term of several words and a ``"quoted phrase"``
match consecutive words, a leading ``-`` excludes, a trailing ``*`` is a prefix.

It runs inside the server venv (imports stdlib, SQLAlchemy, numpy and ``argilla_server`` only) and is registered by
``_launch.py`` with ``SearchEngine.register("sql")``.

Known, deliberate differences from Elasticsearch:
- no relevance: results without an explicit sort come in insertion order (ES: relevance, or a per-user random order
  on the ``/me`` endpoints, which is kept here: see ``USER_ORDER_ENV``);
- word boundaries follow Python's word characters (SQLite) or PostgreSQL's parser, close to but not exactly
  Unicode UAX #29 (e.g. PostgreSQL keeps an e-mail address as one word);
- ``get_dataset_user_progress`` counts the user's own responses by status (ES counts the statuses of every response
  on the records the user answered).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import sqlite3
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union
from uuid import UUID

import numpy as np
from sqlalchemy import JSON, Float, String, and_, case, cast, column, event, false, func, literal, literal_column, or_
from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from argilla_server.database import AsyncSessionLocal, async_engine
from argilla_server.enums import (
    MetadataPropertyType,
    QuestionType,
    RecordStatus,
    ResponseStatus,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
    SuggestionType,
)
from argilla_server.models import (
    Dataset,
    Field,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FilterScope,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

__all__ = ["SQLSearchEngine", "USER_ORDER_ENV", "tokens"]

#: ``random`` (default, like Elasticsearch: a stable per-user shuffle on the ``/me`` search endpoints, so annotators
#: sharing a dataset start on different records) or ``inserted_at`` (everyone sees publishing order).
USER_ORDER_ENV = "CURATE_SEARCH_USER_ORDER"

_TERM_RE = re.compile(r'(-?)"([^"]*)"|(\S+)')
_WORD_RE = re.compile(r"\w+(?:['\u2019.]\w+)*")
_MATCH_FUNCTION = "curate_text_match"  # the SQLite function behind text search (registered on every connection)

Clause = ColumnElement[bool]


def tokens(text: str) -> List[str]:
    """The words of ``text`` as the ``standard`` analyzer indexes them: Unicode word runs, lower-cased."""
    return [word.lower() for word in _WORD_RE.findall(text)]


def _json_path(*keys: str) -> str:
    """A SQLite JSON path with every key quoted (``$."a"."b"``)."""
    return "$" + "".join('."' + key.replace('"', '""') + '"' for key in keys)


def _strings(value: Any) -> Iterable[str]:
    """Every string leaf of a JSON value (a text field, a chat's roles and contents, a custom field's values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


@functools.lru_cache(maxsize=4096)
def _field_words(fields_json: str, name: str) -> Tuple[str, ...]:
    """The words of one field of a record's ``fields`` JSON (cached: a query evaluates it once per term)."""
    try:
        value = json.loads(fields_json).get(name)
    except (ValueError, AttributeError):
        return ()
    words: List[str] = []
    for text in _strings(value):
        words.extend(tokens(text))
        words.append("")  # a gap: a phrase never spans two strings
    return tuple(words)


def _text_match(fields_json: Optional[str], name: str, spec: str) -> int:
    """SQLite function: 1 when the field holds the query's words consecutively (the last as a prefix if asked)."""
    if not fields_json:
        return 0
    query = json.loads(spec)
    wanted, prefix = tuple(query["words"]), query["prefix"]
    words = _field_words(fields_json, name)
    width = len(wanted)
    for start in range(len(words) - width + 1):
        window = words[start : start + width]
        last = window[-1]
        if window[:-1] == wanted[:-1] and (last.startswith(wanted[-1]) if prefix else last == wanted[-1]):
            return 1
    return 0


def _register_sqlite_functions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function(_MATCH_FUNCTION, 3, _text_match, deterministic=True)


class _Dialect:
    """The SQL that differs between SQLite and PostgreSQL: JSON access, JSON array expansion and text search.

    A JSON "value at keys" may be a scalar or a list (metadata terms, multi-label values); ``elements`` expands it to
    one row per element (a scalar is one element) with a keyword form (``true``, ``3``, ``a``), a null test and a
    number, the way Elasticsearch indexes it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.postgresql = name == "postgresql"

    # ---------------------------------------------------------------- scalars
    def json_at(self, column_: Any, *keys: str) -> ColumnElement[Any]:
        """The JSON value at ``keys`` (PostgreSQL ``->``); SQLite works on paths instead (see callers)."""
        value = column_
        for key in keys:
            value = value.op("->", return_type=JSON)(literal(key, String))
        return value

    def text_at(self, column_: Any, *keys: str) -> ColumnElement[Any]:
        """The value at ``keys`` as SQL scalar (text for PostgreSQL, the native JSON1 value for SQLite)."""
        if not self.postgresql:
            return func.json_extract(column_, _json_path(*keys))
        value = self.json_at(column_, *keys[:-1]) if len(keys) > 1 else column_
        return value.op("->>", return_type=String)(literal(keys[-1], String))

    def is_number_at(self, column_: Any, *keys: str) -> Clause:
        if not self.postgresql:
            return func.json_type(column_, _json_path(*keys)).in_(("integer", "real"))
        return func.json_typeof(self.json_at(column_, *keys)) == "number"

    def number_at(self, column_: Any, *keys: str) -> ColumnElement[Any]:
        """The number at ``keys`` (NULL when it is not a number)."""
        return case((self.is_number_at(column_, *keys), cast(self.text_at(column_, *keys), Float)), else_=None)

    # ---------------------------------------------------------------- arrays
    def elements(self, column_: Any, *keys: str) -> "_Elements":
        """The elements of the value at ``keys`` (the whole column when no keys), as a table to join."""
        if not self.postgresql:
            table = func.json_each(column_, *([_json_path(*keys)] if keys else [])).table_valued("value", "type")
            kind = table.c.type
            term = case((kind == "true", literal("true")), (kind == "false", literal("false")),
                        else_=cast(table.c.value, String))
            number = case((kind.in_(("integer", "real")), cast(table.c.value, Float)), else_=None)
            return _Elements(table, term, kind == "null", number)
        source = self.json_at(column_, *keys)
        array = case((func.json_typeof(source) == "array", source), else_=func.json_build_array(source))
        table = func.json_array_elements(array).table_valued(column("value", JSON)).lateral()
        kind = func.json_typeof(table.c.value)
        term = table.c.value.op("#>>", return_type=String)(literal_column("'{}'"))
        number = case((kind == "number", cast(term, Float)), else_=None)
        return _Elements(table, term, kind == "null", number)

    # ---------------------------------------------------------------- text
    def text_match(self, field: str, phrase: str, prefix: bool) -> Clause:
        """The record's ``field`` holds the words of ``phrase`` consecutively (the last one as a prefix)."""
        if not self.postgresql:
            spec = json.dumps({"words": tokens(phrase), "prefix": prefix})
            return getattr(func, _MATCH_FUNCTION)(Record.fields, literal(field, String), literal(spec, String)) == 1
        config = literal_column("'simple'::regconfig")
        document = func.to_tsvector(config, self.json_at(Record.fields, field))
        if prefix:
            quoted = "'" + phrase.replace("\\", "\\\\").replace("'", "''") + "':*"
            query = func.to_tsquery(config, literal(quoted, String))
        else:
            query = func.phraseto_tsquery(config, literal(phrase, String))
        return document.op("@@", return_type=Float)(query).is_(true())

    # ---------------------------------------------------------------- order
    def insertion_order(self) -> List[ColumnElement[Any]]:
        """Insertion order: ``inserted_at``, then SQLite's ``rowid`` (PostgreSQL: the id) within one batch."""
        tie = literal_column("records.rowid") if not self.postgresql else Record.id
        return [Record.inserted_at.asc(), tie.asc()]


@dataclasses.dataclass(frozen=True)
class _Elements:
    """One row per element of a JSON value: join ``table`` (``ON true``) and use the columns."""

    table: Any
    term: ColumnElement[str]  # keyword form
    is_null: Clause
    number: ColumnElement[Any]  # NULL unless a number


def _range(column_: ColumnElement[Any], ge: Any, le: Any) -> Clause:
    """``ge <= column <= le`` with either bound optional; NULLs never match."""
    clauses: List[Clause] = [column_.is_not(None)]
    if ge is not None:
        clauses.append(column_ >= ge)
    if le is not None:
        clauses.append(column_ <= le)
    return and_(*clauses)


def _to_datetime(value: Any) -> datetime:
    """A naive UTC datetime from an ISO string, a datetime or epoch milliseconds (Elasticsearch's date formats)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromtimestamp(float(text) / 1000, tz=timezone.utc)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _text_terms(q: str) -> List[Tuple[str, bool, bool]]:
    """Split a simple query string into ``(phrase, negated, prefix)``; quoted phrases stay whole, terms without a
    word are dropped (like an analyzer that yields no token)."""
    terms: List[Tuple[str, bool, bool]] = []
    for match in _TERM_RE.finditer(q):
        prefix = False
        if match.group(3) is not None:
            raw = match.group(3)
            negated = raw.startswith("-") and len(raw) > 1
            term = raw.lstrip("-+").strip("|")
            prefix = term.endswith("*")
            term = term.replace("*", "")
        else:
            negated, term = bool(match.group(1)), match.group(2)
        if tokens(term):
            terms.append((term, negated, prefix and len(tokens(term)) == 1))
    return terms


def _user_rank(user_id: Any, record_id: UUID) -> bytes:
    """A stable per-user pseudo-random sort key for a record."""
    return hashlib.blake2b(f"{user_id}:{record_id}".encode(), digest_size=8).digest()


@dataclasses.dataclass(frozen=True)
class _DatasetInfo:
    """The parts of a dataset's schema a query needs, read once per request."""

    id: UUID
    questions: Dict[str, Tuple[UUID, QuestionType]]
    metadata: Dict[str, MetadataPropertyType]
    text_fields: List[str]

    def question(self, name: str) -> Tuple[UUID, QuestionType]:
        if name not in self.questions:
            raise ValueError(f"Question `{name}` not found in dataset `{self.id}`")
        return self.questions[name]


@dataclasses.dataclass(frozen=True)
class _VectorMatrix:
    """All vectors of one vector setting, parsed once: unit rows (zero rows stay zero) and a row per record id."""

    version: Tuple[Any, ...]
    rows: Dict[UUID, int]
    unit: np.ndarray
    valid: np.ndarray


# Parsing JSON vectors dominates a similarity search (~1.5 s for 5k x 384-d), so the parsed matrices are kept per
# vector setting in this server process and re-read when the setting's vectors change (count, last insert/update).
_VECTOR_CACHE: "OrderedDict[UUID, _VectorMatrix]" = OrderedDict()
_VECTOR_CACHE_SIZE = 4


async def _vector_matrix(db: AsyncSession, vector_settings_id: UUID) -> _VectorMatrix:
    """The (cached) matrix of a vector setting's vectors."""
    mine = Vector.vector_settings_id == vector_settings_id
    changes = select(func.count(), func.max(Vector.updated_at), func.max(Vector.inserted_at))
    version = tuple((await db.execute(changes.where(mine))).one())
    cached = _VECTOR_CACHE.get(vector_settings_id)
    if cached is not None and cached.version == version:
        _VECTOR_CACHE.move_to_end(vector_settings_id)
        return cached

    rows = (await db.execute(select(Vector.record_id, Vector.value).where(mine))).all()
    width = max((len(value) for _, value in rows if value), default=0)
    rows = [(record_id, value) for record_id, value in rows if value and len(value) == width]
    matrix = np.asarray([value for _, value in rows], dtype=np.float32).reshape(len(rows), width)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    valid = norms[:, 0] > 0
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    entry = _VectorMatrix(
        version=version, rows={record_id: i for i, (record_id, _) in enumerate(rows)}, unit=unit, valid=valid
    )
    _VECTOR_CACHE[vector_settings_id] = entry
    while len(_VECTOR_CACHE) > _VECTOR_CACHE_SIZE:
        _VECTOR_CACHE.popitem(last=False)
    return entry


if async_engine.dialect.name == "sqlite":
    event.listen(async_engine.sync_engine, "connect", _register_sqlite_functions)


class SQLSearchEngine(SearchEngine):
    """Answers Argilla's search-engine calls from the server's SQL database (SQLite or PostgreSQL)."""

    def __init__(
        self, session_factory: Callable[[], AsyncSession] = AsyncSessionLocal, dialect: Optional[str] = None
    ) -> None:
        self._session_factory = session_factory
        self._sql = _Dialect(dialect or async_engine.dialect.name)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    async def new_instance(cls) -> "SQLSearchEngine":
        """One engine per request: it holds no connection of its own."""
        return cls()

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> bool:
        """True when the database answers."""
        async with self._session_factory() as db:
            return (await db.scalar(select(literal(1)))) == 1

    async def info(self) -> dict:
        """What ``GET /api/v1/status`` reports as the search engine."""
        if self._sql.postgresql:
            async with self._session_factory() as db:
                version = str(await db.scalar(select(func.current_setting("server_version"))))
        else:
            version = sqlite3.sqlite_version
        return {"name": "sql", "distribution": f"curate-sql ({self._sql.name})", "version": {"number": version}}

    # ------------------------------------------------------------------ write hooks (the database is the index)
    async def create_index(self, dataset: Dataset) -> None:
        """No index: records are read from SQL."""

    async def delete_index(self, dataset: Dataset) -> None:
        """No index to delete."""

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        """No mapping: metadata is read from the records' JSON."""

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        """No mapping: vectors are read from the ``vectors`` table."""

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        """Records are already in SQL."""

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        """Record updates are already in SQL."""

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        """Deleted rows are already gone from SQL."""

    async def update_record_response(self, response: Response) -> None:
        """Responses are already in SQL."""

    async def delete_record_response(self, response: Response) -> None:
        """Deleted responses are already gone from SQL."""

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        """Suggestions are already in SQL."""

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        """Deleted suggestions are already gone from SQL."""

    # ------------------------------------------------------------------ progress and metrics
    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        """``{"total": n, "pending": n, "completed": n}`` (statuses with no record are left out); ``{}`` for drafts."""
        if dataset.is_draft:
            return {}
        async with self._session_factory() as db:
            rows = await db.execute(
                select(Record.status, func.count()).where(Record.dataset_id == dataset.id).group_by(Record.status)
            )
            counts = {_enum_value(status): count for status, count in rows.all()}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        """The user's responses in the dataset by status: ``{"total": n, "submitted": n, "draft": n, ...}``."""
        if dataset.is_draft:
            return {}
        async with self._session_factory() as db:
            rows = await db.execute(
                select(Response.status, func.count())
                .join(Record, Record.id == Response.record_id)
                .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                .group_by(Response.status)
            )
            counts = {_enum_value(status): count for status, count in rows.all()}
        return {"total": sum(counts.values()), **counts}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        """Terms: value count and per-term record counts; integer/float: min and max."""
        name = metadata_property.name
        dataset_id = metadata_property.dataset_id
        async with self._session_factory() as db:
            if metadata_property.type == MetadataPropertyType.terms:
                values = self._sql.elements(Record.metadata_, name)
                rows = (
                    await db.execute(
                        select(values.term, func.count(func.distinct(Record.id)), func.count())
                        .select_from(Record)
                        .join(values.table, true())
                        .where(Record.dataset_id == dataset_id, ~values.is_null)
                        .group_by(values.term)
                    )
                ).all()
                buckets = sorted(((str(t), docs) for t, docs, _ in rows), key=lambda b: (-b[1], b[0]))
                return TermsMetrics(
                    total=sum(n for _, _, n in rows),
                    values=[TermsMetrics.TermCount(term=t, count=docs) for t, docs in buckets],
                )

            number = self._sql.number_at(Record.metadata_, name)
            low, high = (
                await db.execute(select(func.min(number), func.max(number)).where(Record.dataset_id == dataset_id))
            ).one()
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(
                min=None if low is None else int(low), max=None if high is None else int(high)
            )
        return FloatMetadataMetrics(min=low, max=high)

    # ------------------------------------------------------------------ search
    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[Union[str, UUID]] = None,
    ) -> SearchResponses:
        """Record ids matching the text query and filters, sorted and paged, with the total match count."""
        async with self._session_factory() as db:
            info = await self._dataset_info(db, dataset.id)
            where = self._where(info, query, filter)
            total = await db.scalar(select(func.count()).select_from(Record).where(*where)) or 0

            if user_id is not None and not sort and os.environ.get(USER_ORDER_ENV, "random") == "random":
                ids = list((await db.scalars(select(Record.id).where(*where))).all())
                ids.sort(key=lambda record_id: _user_rank(user_id, record_id))
                page = ids[offset : offset + limit]
            else:
                statement = (
                    select(Record.id)
                    .where(*where)
                    .order_by(*self._order_by(info, sort or []))
                    .offset(offset)
                    .limit(limit)
                )
                page = list((await db.scalars(statement)).all())

        return SearchResponses(items=[SearchResponseItem(record_id=record_id) for record_id in page], total=total)

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> SearchResponses:
        """The ``max_results`` records nearest by cosine to a vector or to a record's own vector.

        Scores are Elasticsearch's cosine scores, ``(1 + cos) / 2``; ``least_similar`` negates the query vector like
        Elasticsearch does, so the least similar come first. The query record itself is excluded.
        """
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")

        async with self._session_factory() as db:
            if not value:
                value = await db.scalar(
                    select(Vector.value).where(
                        Vector.record_id == record.id, Vector.vector_settings_id == vector_settings.id
                    )
                )
            if not value:
                raise ValueError("Cannot find a vector value to apply with provided info")

            info = await self._dataset_info(db, dataset.id)
            where = self._where(info, query, filter)
            if record is not None:
                where.append(Record.id != record.id)
            candidates = list((await db.scalars(select(Record.id).where(*where))).all())
            matrix = await _vector_matrix(db, vector_settings.id)

        hits = _nearest(value, matrix, candidates, least_similar=order == SimilarityOrder.least_similar, k=max_results)
        total = len(hits)
        if threshold is not None:
            hits = [(record_id, score) for record_id, score in hits if score >= threshold]
        return SearchResponses(
            items=[SearchResponseItem(record_id=record_id, score=score) for record_id, score in hits], total=total
        )

    # ------------------------------------------------------------------ query building
    @staticmethod
    async def _dataset_info(db: AsyncSession, dataset_id: UUID) -> _DatasetInfo:
        """Questions, metadata property types and searchable (non-image) fields of a dataset."""
        questions = await db.execute(
            select(Question.name, Question.id, Question.settings).where(Question.dataset_id == dataset_id)
        )
        metadata = await db.execute(
            select(MetadataProperty.name, MetadataProperty.settings).where(MetadataProperty.dataset_id == dataset_id)
        )
        fields = await db.execute(select(Field.name, Field.settings).where(Field.dataset_id == dataset_id))
        return _DatasetInfo(
            id=dataset_id,
            questions={name: (qid, QuestionType(settings["type"])) for name, qid, settings in questions.all()},
            metadata={name: MetadataPropertyType(settings["type"]) for name, settings in metadata.all()},
            text_fields=[name for name, settings in fields.all() if (settings or {}).get("type") != "image"],
        )

    def _where(
        self, info: _DatasetInfo, query: Optional[Union[TextQuery, str]], filter: Optional[Filter]
    ) -> List[Clause]:
        """WHERE clauses on ``records`` for a dataset, a text query and a filter tree."""
        where: List[Clause] = [Record.dataset_id == info.id]
        if query is not None:
            where.append(self._text_clause(info, query))
        if filter is not None:
            where.append(self._filter_clause(info, filter))
        return where

    def _text_clause(self, info: _DatasetInfo, query: Union[TextQuery, str]) -> Clause:
        """Every term's words appear (consecutively) in some searched field; a ``-term`` appears in none."""
        text = TextQuery(q=query) if isinstance(query, str) else query
        if text.field:
            if text.field not in info.text_fields:
                raise ValueError(f"Field `{text.field}` not found in dataset `{info.id}`")
            fields = [text.field]
        else:
            fields = info.text_fields

        clauses: List[Clause] = []
        for phrase, negated, prefix in _text_terms(text.q):
            matched = or_(false(), *(self._sql.text_match(name, phrase, prefix) for name in fields))
            clauses.append(~matched if negated else matched)
        return and_(true(), *clauses)

    def _filter_clause(self, info: _DatasetInfo, filter: Filter) -> Clause:
        """One clause for a filter tree (AND of terms/range filters over the four scopes)."""
        if isinstance(filter, AndFilter):
            return and_(true(), *(self._filter_clause(info, inner) for inner in filter.filters))
        scope = filter.scope
        if isinstance(scope, RecordFilterScope):
            return self._record_clause(filter, str(scope.property))
        if isinstance(scope, MetadataFilterScope):
            return self._metadata_clause(info, filter, scope.metadata_property)
        if isinstance(scope, SuggestionFilterScope):
            return self._suggestion_clause(info, filter, scope)
        if isinstance(scope, ResponseFilterScope):
            return self._response_clause(info, filter, scope)
        raise ValueError(f"Cannot process request for search scope {scope}")

    @staticmethod
    def _record_clause(filter: Union[TermsFilter, RangeFilter], prop: str) -> Clause:
        """Filters on ``id``, ``external_id``, ``status``, ``inserted_at`` and ``updated_at``."""
        if prop in ("inserted_at", "updated_at"):
            column = getattr(Record, prop)
            if isinstance(filter, TermsFilter):
                return column.in_([_to_datetime(value) for value in filter.values])
            return _range(
                column,
                None if filter.ge is None else _to_datetime(filter.ge),
                None if filter.le is None else _to_datetime(filter.le),
            )
        if prop == "id":
            if not isinstance(filter, TermsFilter):
                raise ValueError("Record `id` only supports terms filters")
            return Record.id.in_(_uuids(filter.values))
        if prop == "status":
            if not isinstance(filter, TermsFilter):
                raise ValueError("Record `status` only supports terms filters")
            return Record.status.in_(_members(RecordStatus, filter.values))
        if prop == "external_id":
            if isinstance(filter, TermsFilter):
                return Record.external_id.in_([str(value) for value in filter.values])
            return _range(Record.external_id, _str_or_none(filter.ge), _str_or_none(filter.le))
        raise ValueError(f"Cannot filter records by `{prop}`")

    def _metadata_clause(self, info: _DatasetInfo, filter: Union[TermsFilter, RangeFilter], name: str) -> Clause:
        """Terms match any element of the value (lists included); ranges compare numbers (strings for terms)."""
        if isinstance(filter, TermsFilter):
            values = self._sql.elements(Record.metadata_, name)
            return (
                select(literal(1))
                .select_from(values.table)
                .where(~values.is_null, values.term.in_([str(v) for v in filter.values]))
                .exists()
            )
        if info.metadata.get(name) == MetadataPropertyType.terms:
            return _range(self._sql.text_at(Record.metadata_, name), _str_or_none(filter.ge), _str_or_none(filter.le))
        return _range(self._sql.number_at(Record.metadata_, name), filter.ge, filter.le)

    def _suggestion_clause(
        self,
        info: _DatasetInfo, filter: Union[TermsFilter, RangeFilter], scope: SuggestionFilterScope
    ) -> Clause:
        """A suggestion for the question whose value/score/agent/type matches."""
        question_id, _ = info.question(scope.question)
        prop = scope.property or "value"
        statement = select(literal(1)).where(Suggestion.record_id == Record.id, Suggestion.question_id == question_id)

        if prop in ("value", "score"):
            elements = self._sql.elements(Suggestion.value if prop == "value" else Suggestion.score)
            statement = statement.select_from(Suggestion).join(elements.table, true()).where(~elements.is_null)
            return statement.where(_elements_match(elements, filter)).exists()
        if prop == "agent":
            if isinstance(filter, TermsFilter):
                return statement.where(Suggestion.agent.in_([str(v) for v in filter.values])).exists()
            return statement.where(_range(Suggestion.agent, _str_or_none(filter.ge), _str_or_none(filter.le))).exists()
        if prop == "type":
            if not isinstance(filter, TermsFilter):
                raise ValueError("Suggestion `type` only supports terms filters")
            return statement.where(Suggestion.type.in_(_members(SuggestionType, filter.values))).exists()
        raise ValueError(f"Cannot filter suggestions by `{prop}`")

    def _response_clause(
        self,
        info: _DatasetInfo, filter: Union[TermsFilter, RangeFilter], scope: ResponseFilterScope
    ) -> Clause:
        """Response values per question, or response status (``pending`` = no response [by the scope's user])."""
        by_user: Clause = Response.user_id == scope.user.id if scope.user is not None else true()
        responses = select(literal(1)).where(Response.record_id == Record.id, by_user)

        if scope.question:
            info.question(scope.question)
            elements = self._sql.elements(Response.values, scope.question, "value")
            statement = responses.select_from(Response).join(elements.table, true()).where(~elements.is_null)
            return statement.where(_elements_match(elements, filter)).exists()

        if scope.property == "status" and isinstance(filter, TermsFilter):
            wanted = {str(value) for value in filter.values}
            options: List[Clause] = []
            if ResponseStatusFilter.pending.value in wanted:
                options.append(~responses.exists())
            statuses = _members(ResponseStatus, wanted)
            if statuses:
                options.append(responses.where(Response.status.in_(statuses)).exists())
            return or_(false(), *options)

        raise ValueError(f"Cannot process filter scope {scope}")

    def _order_by(self, info: _DatasetInfo, sort: Sequence[Order]) -> List[ColumnElement[Any]]:
        """ORDER BY for the requested sort (missing values last, like Elasticsearch), then insertion order."""
        clauses: List[ColumnElement[Any]] = []
        for order in sort:
            descending = order.order == SortOrder.desc
            key = self._sort_key(info, order.scope, descending)
            clauses.append((key.desc() if descending else key.asc()).nulls_last())
        return [*clauses, *self._sql.insertion_order()]

    def _sort_key(self, info: _DatasetInfo, scope: FilterScope, descending: bool) -> ColumnElement[Any]:
        """A per-record sort value; multi-valued fields sort by min (asc) or max (desc), responses by average."""
        pick = func.max if descending else func.min

        if isinstance(scope, RecordFilterScope):
            column_ = getattr(Record, str(scope.property))
            return cast(column_, String) if str(scope.property) == "status" else column_  # keyword order, not enum's

        if isinstance(scope, MetadataFilterScope):
            name = scope.metadata_property
            if info.metadata.get(name) == MetadataPropertyType.terms:
                values = self._sql.elements(Record.metadata_, name)
                return select(pick(values.term)).select_from(values.table).where(~values.is_null).scalar_subquery()
            return self._sql.number_at(Record.metadata_, name)

        if isinstance(scope, SuggestionFilterScope):
            question_id, question_type = info.question(scope.question)
            prop = scope.property or "value"
            mine = (Suggestion.record_id == Record.id, Suggestion.question_id == question_id)
            if prop in ("value", "score"):
                elements = self._sql.elements(Suggestion.value if prop == "value" else Suggestion.score)
                numeric = prop == "score" or question_type == QuestionType.rating
                return (
                    select(pick(elements.number if numeric else elements.term))
                    .select_from(Suggestion)
                    .join(elements.table, true())
                    .where(*mine, ~elements.is_null)
                    .scalar_subquery()
                )
            column_ = Suggestion.agent if prop == "agent" else cast(Suggestion.type, String)
            return select(pick(column_)).where(*mine).scalar_subquery()

        if isinstance(scope, ResponseFilterScope):
            by_user: Clause = Response.user_id == scope.user.id if scope.user is not None else true()
            if scope.question:
                _, question_type = info.question(scope.question)
                if question_type == QuestionType.rating:
                    aggregate = func.avg(self._sql.number_at(Response.values, scope.question, "value"))
                else:
                    aggregate = pick(self._sql.text_at(Response.values, scope.question, "value"))
            else:
                aggregate = pick(cast(Response.status, String))
            return select(aggregate).where(Response.record_id == Record.id, by_user).scalar_subquery()

        raise ValueError(f"Cannot sort by scope {scope}")


def _elements_match(elements: _Elements, filter: Union[TermsFilter, RangeFilter]) -> Clause:
    """Terms compare the keyword form; ranges compare numbers."""
    if isinstance(filter, TermsFilter):
        return elements.term.in_([str(v) for v in filter.values])
    return _range(elements.number, filter.ge, filter.le)


def _nearest(
    value: Sequence[float], matrix: _VectorMatrix, candidates: Sequence[UUID], least_similar: bool, k: int
) -> List[Tuple[UUID, float]]:
    """The ``k`` best ``(record_id, (1 + cos) / 2)`` among the candidates; zero or missing vectors never match."""
    query = np.asarray(value, dtype=np.float64)
    if least_similar:
        query = -query
    query_norm = float(np.linalg.norm(query))
    if query_norm == 0.0:
        raise ValueError("Cannot run a cosine similarity search with a zero vector")
    if matrix.unit.shape[1] != query.shape[0]:
        raise ValueError(f"The query vector has {query.shape[0]} dimensions, the stored ones {matrix.unit.shape[1]}")

    pairs = [(record_id, matrix.rows[record_id]) for record_id in candidates if record_id in matrix.rows]
    pairs = [(record_id, row) for record_id, row in pairs if matrix.valid[row]]
    if not pairs or k <= 0:
        return []
    ids = [record_id for record_id, _ in pairs]
    rows = np.fromiter((row for _, row in pairs), dtype=np.int64, count=len(pairs))

    cosine = matrix.unit[rows].astype(np.float64) @ (query / query_norm)
    scores = (1.0 + np.clip(cosine, -1.0, 1.0)) / 2.0
    best = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in best]


def _enum_value(value: Any) -> str:
    """``RecordStatus.pending`` -> ``"pending"`` (and plain strings unchanged)."""
    return str(getattr(value, "value", value))


def _members(enum: Any, values: Iterable[Any]) -> List[Any]:
    """The enum members named by ``values``; unknown values are dropped (they match nothing)."""
    known = {member.value: member for member in enum}
    return [known[str(value)] for value in values if str(value) in known]


def _uuids(values: Iterable[Any]) -> List[UUID]:
    """Valid UUIDs among ``values`` (invalid ones match nothing, like a keyword terms query)."""
    result: List[UUID] = []
    for value in values:
        try:
            result.append(UUID(str(value)))
        except ValueError:
            continue
    return result


def _str_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)
