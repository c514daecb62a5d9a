"""The embedded Argilla server and its SQL search engine, exercised through the argilla SDK against the real server."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import argilla as rg
import pytest

from support import free_port
from workspaces.argilla_io.replay import ensure_user, user_client
from workspaces.argilla_io.server import EmbeddedServer, ServerError, ServerInfo, resolve_server

LABELS = ["pos", "neg", "neu"]
SOURCES = ["a", "b", "c"]
N = 30


# ---------------------------------------------------------------------- lifecycle


def test_up_is_idempotent_and_status(embedded_server: EmbeddedServer, argilla_server: ServerInfo) -> None:
    again = EmbeddedServer(
        home=embedded_server.home, venv=embedded_server.venv, port=embedded_server.port,
        redis_port=embedded_server.redis_port,
    ).up()
    assert again.started is False
    assert again.api_key == argilla_server.api_key
    assert again.api_url == argilla_server.api_url

    status = embedded_server.status()
    assert status.running is True
    assert set(status.pids) == {"redis", "server", "worker"}
    assert status.url == argilla_server.api_url

    credentials = embedded_server.home / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert json.loads(credentials.read_text())["api_key"] == argilla_server.api_key

    with pytest.raises(ServerError, match="already in use"):
        EmbeddedServer(
            home=embedded_server.home.parent / "other-home", venv=embedded_server.venv,
            port=embedded_server.port, redis_port=embedded_server.redis_port + 1,
        ).up()


def test_ensure_venv_reports_failures(tmp_path: Path) -> None:
    server = EmbeddedServer(home=tmp_path / "home", venv=tmp_path / "venv", python=str(tmp_path / "no-python"))
    with pytest.raises(ServerError, match="creating the server venv"):
        server.ensure_venv()
    assert server.status().running is False
    assert server.down() == []


def test_dead_worker_is_restarted_by_up(embedded_server: EmbeddedServer, argilla_server: ServerInfo) -> None:
    worker = embedded_server.status().pids["worker"]
    os.killpg(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "worker" not in embedded_server.status().pids

    assert embedded_server.up().started is False
    revived = embedded_server.status().pids
    assert set(revived) == {"redis", "server", "worker"}
    assert revived["worker"] != worker


def test_resolve_server_prefers_external(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGILLA_API_URL", "http://argilla.example:6900/")
    monkeypatch.setenv("ARGILLA_API_KEY", "key")
    info = resolve_server()
    assert (info.api_url, info.api_key, info.external, info.started) == ("http://argilla.example:6900", "key", True, False)


def test_down_stops_only_its_own_processes(
    embedded_server: EmbeddedServer, argilla_server: ServerInfo, tmp_path: Path
) -> None:
    # A foreign process recorded in pids.json (wrong start time: a recycled pid) must survive down().
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        fake_home = tmp_path / "fake-home"
        fake_home.mkdir()
        (fake_home / "pids.json").write_text(
            json.dumps({"processes": {"server": {"pid": bystander.pid, "start": "1"}}})
        )
        assert EmbeddedServer(home=fake_home, venv=embedded_server.venv).down() == []
        assert bystander.poll() is None

        # A second real server: stopping it leaves the session's server running.
        second = EmbeddedServer(
            home=tmp_path / "second", venv=embedded_server.venv, port=free_port(),
            redis_port=free_port(),
        )
        started = time.monotonic()
        info = second.up()
        print(f"second server start-up: {time.monotonic() - started:.1f} s")
        assert info.started is True
        pids = second.status().pids
        assert set(pids) == {"redis", "server", "worker"}

        stopped = second.down()
        assert sorted(name.split()[0] for name in stopped) == ["redis", "server", "worker"]
        for pid in pids.values():
            assert not _pid_alive(pid)
        assert second.status().running is False
        assert second.down() == []

        assert embedded_server.status().running is True
        assert bystander.poll() is None
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


# ---------------------------------------------------------------------- idle connections


def test_the_server_keeps_an_idle_connection_longer_than_clients_reuse_it(argilla_server: ServerInfo) -> None:
    """A connection idle for 6 s still answers (uvicorn's default closes it at 5 s, the very age at which httpx's
    default pool reuses it: a second `curate publish` waiting on the checkout's lock then failed with ReadError)."""
    from http.client import HTTPConnection
    from urllib.parse import urlparse

    url = urlparse(argilla_server.api_url)
    connection = HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"X-Argilla-Api-Key": argilla_server.api_key}
    try:
        connection.request("GET", "/api/v1/me", headers=headers)
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close
        sock = connection.sock
        time.sleep(6)
        # http.client reconnects only after closing its own socket: the second request goes out on the same one
        connection.request("GET", "/api/v1/me", headers=headers)
        assert connection.sock is sock
        again = connection.getresponse()  # a closed connection raises RemoteDisconnected (a ConnectionResetError)
        assert again.status == 200, again.status
    finally:
        connection.close()


def test_the_client_does_not_reuse_a_connection_idle_past_its_expiry() -> None:
    """`sdk_client` reuses a fresh connection but opens a new one after `KEEPALIVE_EXPIRY` of idle, below the 5 s
    after which a stock uvicorn (a standard Argilla server) closes it; counted on a real HTTP/1.1 keep-alive server."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from workspaces.argilla_io.connection import KEEPALIVE_EXPIRY, sdk_client

    connections: List[int] = []

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def do_GET(self) -> None:  # every path answers as /api/v1/me, which the SDK reads when it is built
            body = json.dumps({"id": "00000000-0000-0000-0000-000000000000", "username": "owner",
                               "role": "owner"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http = sdk_client(f"http://127.0.0.1:{server.server_port}", "key").api.http_client
        http.get("/one").raise_for_status()
        time.sleep(0.2)
        http.get("/two").raise_for_status()
        assert len(connections) == 1  # reused while fresh
        time.sleep(KEEPALIVE_EXPIRY + 1)
        http.get("/three").raise_for_status()
        assert len(connections) == 2  # the idle one was dropped, not reused
        assert KEEPALIVE_EXPIRY < 5
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- a dataset with two annotators


def _vector(i: int) -> List[float]:
    # No two records tie (cosine gaps > 1e-3) for the queries below, so the expected order is unambiguous.
    return [math.cos(i / 5), math.sin(i / 5), 0.1 * (i % 4) + 0.003 * i]


def _metadata(i: int) -> Dict[str, Any]:
    return {"source": SOURCES[i % 3], "confidence": round(i / N, 4), "length": 100 - i}


def _text(i: int) -> str:
    topic = "Banking transfer" if i % 3 == 0 else "card payment"
    return f"Message {i:02d} about {topic}" + (" (urgent)" if i % 5 == 0 else "")


# Annotations: user -> {record index: (status, label or None)}
ANN1: Dict[int, Any] = {
    **{i: ("submitted", LABELS[i % 3] if i % 2 == 0 else "neu") for i in range(10)},
    10: ("draft", "pos"), 11: ("draft", "neg"), 12: ("discarded", None),
}
ANN2: Dict[int, Any] = {
    **{i: ("submitted", "pos") for i in range(5)},
    13: ("draft", "neg"), 14: ("discarded", None),
}


class Env:
    """Handles on the dataset built once for the search-engine tests."""

    client: Any
    dataset: Any
    http: Any
    annotators: Dict[str, Any]  # username -> client
    ids: Dict[int, str]  # record index -> server id


@pytest.fixture(scope="module")
def env(argilla_client: Any, argilla_server: ServerInfo) -> Env:
    return build_env(argilla_client)


def build_env(client: Any) -> Env:
    """The search-engine dataset with two annotators' responses (tests/test_scale.py builds it on PostgreSQL too)."""
    workspace = client.workspaces("argilla")
    settings = rg.Settings(
        fields=[rg.TextField(name="text"), rg.TextField(name="context")],
        questions=[
            rg.LabelQuestion(name="label", labels=LABELS),
            rg.RatingQuestion(name="rating", values=[1, 2, 3, 4, 5], required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="source"),
            rg.FloatMetadataProperty(name="confidence"),
            rg.IntegerMetadataProperty(name="length"),
        ],
        vectors=[rg.VectorField(name="emb", dimensions=3)],
        distribution=rg.TaskDistribution(min_submitted=2),
    )
    dataset = rg.Dataset(name="search-engine", settings=settings, workspace=workspace, client=client).create()
    dataset.records.log(
        [
            rg.Record(
                id=f"rec-{i:02d}",
                fields={"text": _text(i), "context": "ctx SHARED" if i < 3 else "ctx"},
                metadata=_metadata(i),
                vectors={"emb": _vector(i)},
                suggestions=[
                    rg.Suggestion("label", LABELS[i % 3], score=round(i / N, 4),
                                  agent="model-a" if i < 15 else "model-b", type="model" if i % 2 else "human"),
                    rg.Suggestion("rating", (i % 5) + 1, score=0.5, agent="judge"),
                ],
            )
            for i in range(N)
        ]
    )

    e = Env()
    e.client, e.dataset, e.http = client, dataset, client.api.http_client
    e.ids = {int(r.id.split("-")[1]): str(r._server_id) for r in dataset.records}
    assert len(e.ids) == N

    e.annotators = {}
    for username, recorded in (("ann1", ANN1), ("ann2", ANN2)):
        annotator = user_client(client, ensure_user(client, username, workspace.name))
        e.annotators[username] = annotator
        for i, (status, label) in recorded.items():
            body: Dict[str, Any] = {"status": status}
            if label is not None:
                body["values"] = {"label": {"value": label}, "rating": {"value": 4 if username == "ann1" else 2}}
            reply = annotator.api.http_client.post(f"/api/v1/records/{e.ids[i]}/responses", json=body)
            assert reply.status_code == 201, reply.text
    return e


def _external_ids(dataset: Any, query: Any) -> List[str]:
    # with_responses=False: the 2.8 SDK crashes on a discarded response without values (values=None).
    return sorted(record.id for record in dataset.records(query=query, with_responses=False))


def _expected(indices: Any) -> List[str]:
    return sorted(f"rec-{i:02d}" for i in indices)


def _search(http: Any, dataset_id: Any, body: Dict[str, Any], me: bool = False, **params: Any) -> Dict[str, Any]:
    prefix = "/api/v1/me" if me else "/api/v1"
    reply = http.post(f"{prefix}/datasets/{dataset_id}/records/search", json=body, params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _search_ext_ids(result: Dict[str, Any]) -> List[str]:
    return [item["record"]["external_id"] for item in result["items"]]


def _status_filter(statuses: List[str]) -> Dict[str, Any]:
    return {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": statuses}]}


def test_response_status_filters(env: Env) -> None:
    by_status = lambda s: _external_ids(env.dataset, rg.Query(filter=rg.Filter(("response.status", "==", s))))  # noqa: E731
    answered = set(ANN1) | set(ANN2)
    assert by_status("submitted") == _expected(range(10))
    assert by_status("draft") == _expected([10, 11, 13])
    assert by_status("discarded") == _expected([12, 14])
    assert by_status("pending") == _expected(set(range(N)) - answered)
    both = rg.Query(filter=rg.Filter(("response.status", "in", ["pending", "discarded"])))
    assert _external_ids(env.dataset, both) == _expected((set(range(N)) - answered) | {12, 14})


def test_record_status_follows_distribution(env: Env) -> None:
    completed = _external_ids(env.dataset, rg.Query(filter=rg.Filter(("status", "==", "completed"))))
    assert completed == _expected(range(5))  # two submitted responses each (min_submitted=2)
    pending = _external_ids(env.dataset, rg.Query(filter=rg.Filter(("status", "==", "pending"))))
    assert len(pending) == N - 5


def test_per_user_status_on_me_endpoint(env: Env) -> None:
    for username, recorded in (("ann1", ANN1), ("ann2", ANN2)):
        http = env.annotators[username].api.http_client
        for status in ("submitted", "draft", "discarded"):
            result = _search(http, env.dataset.id, {"filters": _status_filter([status])}, me=True, limit=100)
            want = _expected(i for i, (s, _) in recorded.items() if s == status)
            assert sorted(_search_ext_ids(result)) == want, (username, status)
            assert result["total"] == len(want)
        pending = _search(http, env.dataset.id, {"filters": _status_filter(["pending"])}, me=True, limit=100)
        assert sorted(_search_ext_ids(pending)) == _expected(set(range(N)) - set(recorded))

    # Each annotator gets a stable order of its own (a per-user shuffle, like Elasticsearch's random_score).
    orders = {
        u: _search_ext_ids(_search(c.api.http_client, env.dataset.id, {}, me=True, limit=100))
        for u, c in env.annotators.items()
    }
    assert orders["ann1"] != orders["ann2"]
    assert sorted(orders["ann1"]) == _expected(range(N))
    again = _search(env.annotators["ann1"].api.http_client, env.dataset.id, {}, me=True, limit=100)
    assert _search_ext_ids(again) == orders["ann1"]

    metrics = env.annotators["ann1"].api.http_client.get(f"/api/v1/me/datasets/{env.dataset.id}/metrics").json()
    assert metrics["responses"] == {"total": N, "submitted": 10, "draft": 2, "discarded": 1, "pending": N - 13}


def test_response_value_filters(env: Env) -> None:
    pos = _external_ids(env.dataset, rg.Query(filter=rg.Filter(("label.response", "==", "pos"))))
    want = {i for i, (_, label) in ANN1.items() if label == "pos"} | {i for i, (_, label) in ANN2.items() if label == "pos"}
    assert pos == _expected(want)

    rating = {"entity": "response", "question": "rating"}
    result = _search(env.http, env.dataset.id, {"filters": {"and": [{"type": "range", "scope": rating, "ge": 3}]}},
                     limit=100)
    assert sorted(_search_ext_ids(result)) == _expected(i for i, (_, label) in ANN1.items() if label is not None)


def test_metadata_filters(env: Env) -> None:
    assert _external_ids(env.dataset, rg.Query(filter=("metadata.source", "==", "a"))) == _expected(range(0, N, 3))
    in_ab = _external_ids(env.dataset, rg.Query(filter=("metadata.source", "in", ["a", "b"])))
    assert in_ab == _expected(i for i in range(N) if i % 3 != 2)
    ranged = rg.Query(filter=rg.Filter([("metadata.confidence", ">=", 0.5), ("metadata.length", ">=", 80)]))
    assert _external_ids(env.dataset, ranged) == _expected(i for i in range(N) if i / N >= 0.5 and 100 - i >= 80)


def test_record_filters(env: Env) -> None:
    by_server_id = rg.Query(filter=("_server_id", "in", [env.ids[3], env.ids[4]]))
    assert _external_ids(env.dataset, by_server_id) == _expected([3, 4])
    assert _external_ids(env.dataset, rg.Query(filter=("id", "in", ["rec-05", "nope"]))) == _expected([5])

    since = lambda when: _external_ids(env.dataset, rg.Query(filter=("inserted_at", ">=", when)))  # noqa: E731
    assert since("2000-01-01T00:00:00Z") == _expected(range(N))
    assert since("2999-01-01") == []
    before = rg.Query(filter=("updated_at", "<=", "2999-01-01T00:00:00+00:00"))
    assert _external_ids(env.dataset, before) == _expected(range(N))


def test_suggestion_filters(env: Env) -> None:
    q = lambda *c: _external_ids(env.dataset, rg.Query(filter=rg.Filter(list(c))))  # noqa: E731
    assert q(("label.suggestion", "==", "neg")) == _expected(range(1, N, 3))
    assert q(("label.score", ">=", 0.8)) == _expected(i for i in range(N) if round(i / N, 4) >= 0.8)
    assert q(("label.agent", "==", "model-b")) == _expected(range(15, N))
    assert q(("label.agent", "==", "model-b"), ("label.suggestion", "in", ["pos", "neu"])) == _expected(
        i for i in range(15, N) if i % 3 != 1
    )
    assert q(("rating.suggestion", "==", 3)) == _expected(i for i in range(N) if (i % 5) + 1 == 3)
    assert q(("label.type", "==", "model")) == _expected(range(1, N, 2))
    assert q(("rating.type", "in", ["model", "human"])) == []  # no type given


def test_text_search(env: Env) -> None:
    assert _external_ids(env.dataset, rg.Query(query="banking")) == _expected(range(0, N, 3))
    assert _external_ids(env.dataset, rg.Query(query="BANKING urgent")) == _expected(
        i for i in range(0, N, 3) if i % 5 == 0
    )
    assert _external_ids(env.dataset, rg.Query(query="shared")) == _expected(range(3))  # the other field
    assert _external_ids(env.dataset, rg.Query(query="no-such-words")) == []
    combined = rg.Query(query="payment", filter=("metadata.source", "==", "b"))
    assert _external_ids(env.dataset, combined) == _expected(range(1, N, 3))

    only_text = {"query": {"text": {"q": "shared", "field": "text"}}}
    assert _search(env.http, env.dataset.id, only_text)["total"] == 0
    only_context = {"query": {"text": {"q": "shared", "field": "context"}}}
    assert _search(env.http, env.dataset.id, only_context)["total"] == 3


def check_token_text_search(client: Any) -> None:
    """Text search like Elasticsearch's standard analyzer: whole words, Unicode case folding, phrases, prefixes."""
    settings = rg.Settings(fields=[rg.TextField(name="text"), rg.TextField(name="note", required=False)],
                           questions=[rg.LabelQuestion(name="label", labels=LABELS)])
    dataset = rg.Dataset(name="token-match", settings=settings, workspace="argilla", client=client).create()
    texts = {
        "pine": ("Pineapple juice", None), "apple": ("An apple a day", None), "unicode": ("Ünïcode café", None),
        "phrase": ("card payment failed", None), "reverse": ("payment by card", "see ÉTÉ notes"),
        "apostrophe": ("Don't panic", None), "hyphen": ("a state-of-the-art tool", None),
    }
    dataset.records.log([
        rg.Record(id=key, fields={"text": text, **({"note": note} if note else {})}) for key, (text, note) in texts.items()
    ])
    found = lambda q: sorted(r.id for r in dataset.records(query=rg.Query(query=q), with_responses=False))  # noqa: E731
    try:
        assert found("apple") == ["apple"]  # not "Pineapple"
        assert found("APPLE") == ["apple"] and found("pine") == []
        assert found("ünïcode") == ["unicode"] and found("ÜNÏCODE") == ["unicode"] and found("CAFÉ") == ["unicode"]
        assert found("cafe") == []  # folding case, not accents (the standard analyzer keeps them)
        assert found("été") == ["reverse"]  # the other field
        assert found("card payment") == ["phrase", "reverse"]  # every term, anywhere
        assert found('"card payment"') == ["phrase"]  # a phrase: consecutive words
        assert found('"payment card"') == []
        assert found("appl*") == ["apple"]  # a prefix of a word, still not inside "pineapple"
        assert found("-apple juice") == ["pine"]
        assert found("don't") == ["apostrophe"]
        assert found("art") == ["hyphen"] and found("state-of-the-art") == ["hyphen"]
        assert found("tat") == [] and found("app") == []
        only_note = {"query": {"text": {"q": "card", "field": "note"}}}
        reply = client.api.http_client.post(f"/api/v1/datasets/{dataset.id}/records/search", json=only_note)
        assert reply.status_code == 200 and reply.json()["total"] == 0
    finally:
        dataset.delete()


def test_text_search_matches_tokens_and_folds_unicode_case(argilla_client: Any) -> None:
    check_token_text_search(argilla_client)


def test_sort_and_paging(env: Env) -> None:
    by_confidence = {"sort": [{"scope": {"entity": "metadata", "metadata_property": "confidence"}, "order": "desc"}]}
    page = _search(env.http, env.dataset.id, by_confidence, offset=5, limit=5)
    assert page["total"] == N
    assert _search_ext_ids(page) == [f"rec-{i:02d}" for i in range(N - 6, N - 11, -1)]

    by_length = {"sort": [{"scope": {"entity": "metadata", "metadata_property": "length"}, "order": "asc"}]}
    assert _search_ext_ids(_search(env.http, env.dataset.id, by_length, limit=3)) == ["rec-29", "rec-28", "rec-27"]

    by_insert = {"sort": [{"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"}]}
    assert _search_ext_ids(_search(env.http, env.dataset.id, by_insert, limit=100)) == [
        f"rec-{i:02d}" for i in range(N)
    ]

    by_score = {"sort": [{"scope": {"entity": "suggestion", "question": "label", "property": "score"}, "order": "desc"}],
                "filters": {"and": [{"type": "terms", "scope": {"entity": "metadata", "metadata_property": "source"},
                                     "values": ["c"]}]}}
    result = _search(env.http, env.dataset.id, by_score, limit=3)
    assert result["total"] == 10
    assert _search_ext_ids(result) == ["rec-29", "rec-26", "rec-23"]

    by_response = {"sort": [{"scope": {"entity": "response", "question": "rating"}, "order": "asc"}]}
    first = _search_ext_ids(_search(env.http, env.dataset.id, by_response, limit=5))
    # rec-13: ann2's draft (2); rec-00..04: avg(ann1 4, ann2 2) = 3; then ann1-only 4s; no value sorts last
    assert first == ["rec-13", "rec-00", "rec-01", "rec-02", "rec-03"]
    last = _search(env.http, env.dataset.id, by_response, offset=N - 1, limit=1)
    assert _search_ext_ids(last) == ["rec-29"]


def test_progress(env: Env) -> None:
    progress = env.dataset.progress(with_users_distribution=True)
    assert (progress["total"], progress["completed"], progress["pending"]) == (N, 5, N - 5)
    assert progress["users"]["ann1"] == {
        "completed": {"submitted": 5, "draft": 0, "discarded": 0},
        "pending": {"submitted": 5, "draft": 2, "discarded": 1},
    }
    assert progress["users"]["ann2"]["pending"] == {"submitted": 0, "draft": 1, "discarded": 1}


def test_metadata_metrics(env: Env) -> None:
    properties = env.http.get(f"/api/v1/me/datasets/{env.dataset.id}/metadata-properties").json()["items"]
    ids = {p["name"]: p["id"] for p in properties}
    metrics = lambda name: env.http.get(f"/api/v1/metadata-properties/{ids[name]}/metrics").json()  # noqa: E731
    assert metrics("source") == {
        "type": "terms", "total": N,
        "values": [{"term": "a", "count": 10}, {"term": "b", "count": 10}, {"term": "c", "count": 10}],
    }
    assert metrics("confidence") == {"type": "float", "min": 0.0, "max": round((N - 1) / N, 4)}
    assert metrics("length") == {"type": "integer", "min": 100 - (N - 1), "max": 100}


def _cosine(a: List[float], b: List[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_similarity_search(env: Env) -> None:
    query = [1.0, 0.2, 0.15]
    ranked = sorted(range(N), key=lambda i: -_cosine(query, _vector(i)))

    similar = lambda q, limit: list(env.dataset.records(query=q, limit=limit, with_responses=False))  # noqa: E731
    hits = similar(rg.Query(similar=rg.Similar(name="emb", value=query)), 5)
    assert [record.id for record, _ in hits] == [f"rec-{i:02d}" for i in ranked[:5]]
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx((1 + _cosine(query, _vector(ranked[0]))) / 2, abs=1e-6)

    least = similar(rg.Query(similar=rg.Similar(name="emb", value=query, most_similar=False)), 3)
    assert [record.id for record, _ in least] == [f"rec-{i:02d}" for i in ranked[::-1][:3]]

    filtered = similar(rg.Query(similar=rg.Similar(name="emb", value=query), filter=("metadata.source", "==", "b")), 3)
    assert [record.id for record, _ in filtered] == [f"rec-{i:02d}" for i in ranked if i % 3 == 1][:3]

    anchor = next(iter(env.dataset.records(query=rg.Query(filter=("id", "==", "rec-07")), with_responses=False)))
    around = sorted((i for i in range(N) if i != 7), key=lambda i: -_cosine(_vector(7), _vector(i)))
    by_record = similar(rg.Query(similar=rg.Similar(name="emb", value=anchor)), 4)
    assert [record.id for record, _ in by_record] == [f"rec-{i:02d}" for i in around[:4]]


def check_no_cartesian_products(server_log: Path) -> None:
    """The engine joins its JSON table functions explicitly: SQLAlchemy warns about no cartesian product."""
    text = server_log.read_text(errors="replace")
    assert "search" in text or "Application startup complete" in text
    assert "cartesian product" not in text, [line for line in text.splitlines() if "cartesian" in line][:3]


def test_no_cartesian_product_warnings_in_the_server_log(env: Env, embedded_server: EmbeddedServer) -> None:
    check_no_cartesian_products(embedded_server.logs / "server.log")


def test_distribution_change_runs_on_the_worker(env: Env) -> None:
    """Lowering min_submitted re-computes record statuses in an rq job: this needs the worker."""
    dataset = env.client.datasets("search-engine", workspace="argilla")
    dataset.settings.distribution = rg.TaskDistribution(min_submitted=1)
    dataset.update()
    completed: List[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        completed = _external_ids(env.dataset, rg.Query(filter=rg.Filter(("status", "==", "completed"))))
        if len(completed) == 10:
            break
        time.sleep(0.5)
    assert completed == _expected(range(10))
    assert env.dataset.progress()["completed"] == 10
