"""The embedded Argilla server: a real argilla-server 2.8.0 in its own venv, with Redis, SQLite and a SQL search
engine instead of Elasticsearch. Point ``ARGILLA_API_URL``/``ARGILLA_API_KEY`` at a standard deployment to use that
instead (``resolve_server``)."""

from .embedded import EmbeddedServer, ServerError, ServerInfo, ServerStatus, external_server, resolve_server

__all__ = ["EmbeddedServer", "ServerError", "ServerInfo", "ServerStatus", "external_server", "resolve_server"]
