"""The wire layer: every raw HTTP call to the Argilla API, paging, bulk requests and one error wrapper.

The rest of the package uses the Argilla SDK's resources where they fit (datasets, settings, `records.log`) and this
module where the SDK drops what we need (response timestamps, discarded responses with no values, per-user bulk
submits, a user's API key). No other module spells an API path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import argilla as rg

from ..errors import ArgillaError, CurateError

__all__ = ["Wire", "argilla_errors", "PAGE", "BULK"]

PAGE = 1000  # the server's maximum page size when listing records
BULK = 100  # the server's maximum items per responses bulk request


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _detail(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except Exception:  # not JSON
        body = None
    if isinstance(body, dict) and body.get("detail") is not None:
        detail = body["detail"]
        message = detail if isinstance(detail, str) else str(detail)
    else:
        message = str(exc) or str(getattr(exc, "message", None) or type(exc).__name__)
        message = message.removeprefix("Argilla SDK error: ")
    # a database error's detail quotes the SQL statement and its parameters (record text): keep only the reason
    for marker in ("[SQL:", "[parameters:", "(Background on this error"):
        message = message.split(marker)[0]
    return message.strip()[:500]


@contextlib.contextmanager
def argilla_errors(url: str, what: str) -> Iterator[None]:
    """Turn every failure talking to Argilla into one `ArgillaError` that names the URL and what to do.

    Args:
        url: the server's URL (named in the message).
        what: what we were doing ("publishing convabuse-demo"), named in the message.
    """
    import httpx

    try:
        yield
    except CurateError:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ArgillaError(f"cannot reach Argilla at {url} while {what} ({type(exc).__name__}): is the server "
                           "running? `curate server up` starts the embedded one; check ARGILLA_API_URL otherwise"
                           ) from None
    except (httpx.TimeoutException,) as exc:
        raise ArgillaError(f"Argilla at {url} did not answer in time while {what} ({type(exc).__name__}); "
                           "the server may be overloaded: try again, or raise the timeout") from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ArgillaError(f"the connection to Argilla at {url} broke while {what} ({type(exc).__name__}: the server "
                           "may have stopped). Nothing half-done was kept on our side: run the command again") from None
    except Exception as exc:
        status = _status(exc)
        name = type(exc).__name__
        module = type(exc).__module__
        if status is None and not module.startswith(("argilla", "httpx")):
            raise
        if status == 401 or "Credentials" in name or "Unauthorized" in name:
            raise ArgillaError(f"Argilla at {url} refused the API key while {what} (401): the server was reached, "
                               "the key is wrong (check ARGILLA_API_KEY, or the embedded server's credentials)"
                               ) from None
        if status == 403 or "Forbidden" in name:
            raise ArgillaError(f"Argilla at {url} forbade {what} (403): the user lacks the role or workspace "
                               f"membership: {_detail(exc)}") from None
        if status is not None and status >= 500:
            raise ArgillaError(f"Argilla at {url} failed while {what} (HTTP {status}): see the server log "
                               "(`curate server status` prints where); then run the command again") from None
        if status is not None:
            raise ArgillaError(f"Argilla at {url} rejected a request while {what} (HTTP {status}): "
                               f"{_detail(exc)}") from None
        raise ArgillaError(f"Argilla at {url} failed while {what}: {name}: {_detail(exc)}") from None


class Wire:
    """Raw API calls through the SDK client's HTTP session (its URL, key and timeouts)."""

    def __init__(self, client: rg.Argilla) -> None:
        self.client = client
        self.http = client.api.http_client
        self.url = str(client.api_url).rstrip("/")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.http.request(method, path, **kwargs)
        reply.raise_for_status()
        return reply.json() if reply.content else None

    # ---- records -----------------------------------------------------------------------------------------------
    def record_pages(self, dataset_id: Any, *, include: tuple[str, ...] = (), page: int = PAGE
                     ) -> Iterator[list[dict[str, Any]]]:
        """Every record of a dataset, a page at a time (`include`: responses, suggestions, vectors)."""
        offset = 0
        while True:
            params: dict[str, Any] = {"offset": offset, "limit": page}
            if include:
                params["include"] = list(include)
            items = self._json("GET", f"/api/v1/datasets/{dataset_id}/records", params=params)["items"]
            if items:
                yield items
            offset += len(items)
            if len(items) < page:
                return

    def record_ids(self, dataset_id: Any) -> dict[str, str]:
        """Item id (the record's external id) -> the record's server id."""
        return {item["external_id"]: item["id"] for items in self.record_pages(dataset_id) for item in items}

    def clear_suggestions(self, record_id: str) -> int:
        """Remove every suggestion of a record (draft suppression of an already published record)."""
        ids = [s["id"] for s in self._json("GET", f"/api/v1/records/{record_id}/suggestions")["items"]]
        if ids:
            self._json("DELETE", f"/api/v1/records/{record_id}/suggestions", params={"ids": ",".join(ids)})
        return len(ids)

    # ---- responses ---------------------------------------------------------------------------------------------
    def submit_responses(self, items: list[dict[str, Any]]) -> list[str]:
        """`POST /api/v1/me/responses/bulk` as this client's user; returns the per-item errors (empty when all ok)."""
        errors: list[str] = []
        for start in range(0, len(items), BULK):
            reply = self._json("POST", "/api/v1/me/responses/bulk", json={"items": items[start:start + BULK]})
            errors += [str(r["error"]["detail"]) for r in reply["items"] if r.get("error")]
        return errors

    # ---- users -------------------------------------------------------------------------------------------------
    def api_key_of(self, user_id: Any) -> str:
        """A user's API key (owner only)."""
        return self._json("GET", f"/api/v1/users/{user_id}")["api_key"]

    def workspace_users(self, workspace_id: Any) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/v1/workspaces/{workspace_id}/users")["items"]

    def remove_from_workspace(self, workspace_id: Any, user_id: Any) -> None:
        self._json("DELETE", f"/api/v1/workspaces/{workspace_id}/users/{user_id}")

    def add_to_workspace(self, workspace_id: Any, user_id: Any) -> None:
        self._json("POST", f"/api/v1/workspaces/{workspace_id}/users", json={"user_id": str(user_id)})

    # ---- datasets ----------------------------------------------------------------------------------------------
    def progress(self, dataset_id: Any) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/datasets/{dataset_id}/progress")

    def users_progress(self, dataset_id: Any) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/v1/datasets/{dataset_id}/users/progress")["users"]

    def update_question(self, question_id: Any, payload: dict[str, Any]) -> None:
        self._json("PATCH", f"/api/v1/questions/{question_id}", json=payload)

    def update_field(self, field_id: Any, payload: dict[str, Any]) -> None:
        self._json("PATCH", f"/api/v1/fields/{field_id}", json=payload)

    def me(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/me")
