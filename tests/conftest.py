# --- hub fixtures (push helper) ---
# `datasets` and `huggingface_hub` read HF_ENDPOINT when they are imported: this section must stay the first thing in
# conftest.py so the test Hub's address is set before anything (argilla, datasets, a test module) imports them.
import atexit as _atexit
import os as _os
import shutil as _shutil
import tempfile as _tempfile

import pytest as _hub_pytest
from support import free_port

HUB_TOKEN = "hf_test_alice_write_token_0123456789"  # alice's token on the test Hub
HUB_OTHER_TOKEN = "hf_test_bob_write_token_9876543210"  # bob's token: a valid user without access to alice's repos


_HUB_PORT = free_port()
_HUB_HOME = _tempfile.mkdtemp(prefix="curate-test-hf-home-")
_atexit.register(_shutil.rmtree, _HUB_HOME, True)
_os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{_HUB_PORT}"
_os.environ["HF_HUB_DISABLE_XET"] = "1"
_os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
_os.environ["HF_HOME"] = _HUB_HOME  # no stored login, no shared cache
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE",
              "HF_DATASETS_CACHE", "HF_TOKEN_PATH"):
    _os.environ.pop(_name, None)


@_hub_pytest.fixture(scope="session")
def hub_server(tmp_path_factory: _hub_pytest.TempPathFactory) -> "object":
    """A Hub-compatible HTTP server on 127.0.0.1 (tests/support/hub_server.py) at HF_ENDPOINT; users alice, bob."""
    from huggingface_hub import constants

    from support.hub_server import HubServer

    if constants.ENDPOINT != _os.environ["HF_ENDPOINT"]:
        raise RuntimeError("huggingface_hub was imported before tests/conftest.py set HF_ENDPOINT")
    server = HubServer(tmp_path_factory.mktemp("hub"), tokens={HUB_TOKEN: "alice", HUB_OTHER_TOKEN: "bob"},
                       port=_HUB_PORT).start()
    try:
        yield server
    finally:
        server.stop()
# --- end hub fixtures ---

# --- embedded server fixtures (server helper) ---
from typing import Iterator as _Iterator

import pytest as _pytest


@_pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: _pytest.TempPathFactory) -> "_Iterator[object]":
    """An EmbeddedServer in a temp home on free ports, sharing the default server venv; stopped at the end."""
    from workspaces.argilla_io.server import EmbeddedServer

    server = EmbeddedServer(
        home=tmp_path_factory.mktemp("argilla-home"), port=free_port(), redis_port=free_port()
    )
    try:
        yield server
    finally:
        server.down()


@_pytest.fixture(scope="session")
def argilla_server(embedded_server: "object") -> "object":
    """A running embedded Argilla server (ServerInfo); started once per test session."""
    return embedded_server.up(progress=print)


@_pytest.fixture(scope="session")
def argilla_client(argilla_server: "object") -> "_Iterator[object]":
    """An ``rg.Argilla`` client logged in as the embedded server's owner (built as the CLI builds its own); the
    datasets the suite created are deleted at the end of the session."""
    from workspaces.argilla_io.connection import sdk_client

    client = sdk_client(argilla_server.api_url, argilla_server.api_key)
    yield client
    for dataset in list(client.datasets):
        dataset.delete()
# --- end embedded server fixtures ---
