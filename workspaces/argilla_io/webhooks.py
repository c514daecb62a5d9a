"""Argilla webhooks for `curate watch`: a signed response event wakes the loop within seconds.

Argilla 2.8 signs each event the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`: an
HMAC-SHA256 with the webhook's secret). `WebhookReceiver` is a small threaded HTTP listener on 127.0.0.1 that
accepts an event only when:

- its signature verifies with the secret of the webhook it registered (`standardwebhooks`, which also refuses a
  timestamp more than five minutes off): else `bad signature` (401);
- its `webhook-id` was never accepted before: else `replayed` (409), so nothing is applied twice;
- it is about a response of the project's dataset: else `unknown dataset` (422);
- it is a response event at all: else `not a response event` (422).

Each rejection is counted by reason; accepted events wait in a queue for the loop. Periodic `curate sync` remains the
source of truth: the watch reacts to an event by syncing (the same file contract), so it ends equal to a full sync.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import argilla as rg

from ._wire import argilla_errors

__all__ = ["PATH", "WATCH_EVENTS", "WebhookReceiver", "describe", "register_webhook"]

WATCH_EVENTS = ["response.created", "response.updated", "response.deleted"]
PATH = "/curate/webhook"
MAX_BODY = 1 << 20  # an event of one response is a few kB


def register_webhook(client: rg.Argilla, url: str) -> rg.Webhook:
    """Register a webhook for the response events at `url` (the caller deletes it when done)."""
    with argilla_errors(str(client.api_url), "registering the watch webhook"):
        return rg.Webhook(url=url, events=WATCH_EVENTS, description="curate watch", _client=client).create()


class WebhookReceiver:
    """The listener: verified events of one dataset in `events`, rejections counted in `counts`."""

    def __init__(self, dataset_id: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.dataset_id = str(dataset_id)
        self.secret: Optional[str] = None  # set once the webhook is registered (it needs our URL first)
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.counts: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, MAX_BODY))
                status, reason = receiver.receive(body, {k.lower(): v for k, v in self.headers.items()},
                                                  self.path)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(reason.encode())

            def log_message(self, *args: Any) -> None:  # quiet: the watch prints what matters
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PATH}"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, body: bytes, headers: dict[str, str], path: str = PATH) -> tuple[int, str]:
        """Check one delivery; returns the HTTP status and reason (and queues it when accepted)."""
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        def reject(status: int, reason: str) -> tuple[int, str]:
            with self._lock:
                self.counts[reason] += 1
            return status, reason

        if path != PATH:
            return reject(404, "unknown path")
        if self.secret is None:
            return reject(503, "not ready")
        try:
            event = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError, KeyError):
            return reject(401, "bad signature")
        message_id = headers.get("webhook-id", "")
        with self._lock:
            if message_id in self._seen:
                self.counts["replayed"] += 1
                return 409, "replayed"
            self._seen.add(message_id)
        if not isinstance(event, dict) or event.get("type") not in WATCH_EVENTS:
            return reject(422, "not a response event")
        record = ((event.get("data") or {}).get("record") or {})
        dataset = (record.get("dataset") or {}).get("id") or record.get("dataset_id")
        if str(dataset) != self.dataset_id:
            return reject(422, "unknown dataset")
        with self._lock:
            self.counts["accepted"] += 1
        self.events.put({"id": message_id, "type": event["type"], "at": time.time(),
                         "user": ((event.get("data") or {}).get("user") or {}).get("username"),
                         "record": record.get("external_id") or record.get("id")})
        return 200, "accepted"

    def drain(self, timeout: float, settle: float = 0.3) -> list[dict[str, Any]]:
        """The events that arrived: waits up to `timeout` for the first, then `settle` seconds for its burst."""
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        got = [first]
        deadline = time.monotonic() + settle
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.events.get(timeout=left))
            except queue.Empty:
                break
        return got


def describe(counts: Counter[str]) -> str:
    """`accepted 5, bad signature 1, ...` (accepted first)."""
    order = sorted(counts, key=lambda k: (k != "accepted", k))
    return ", ".join(f"{k} {counts[k]}" for k in order) or "none"

