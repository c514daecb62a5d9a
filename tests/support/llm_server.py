"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving the offline SmolLM2 GGUF (for the OpenAI path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from support import free_port

__all__ = ["LlamaServer"]


class LlamaServer:
    """`python -m llama_cpp.server` with `--model_alias local`; `base_url` is `http://127.0.0.1:<port>/v1`."""

    def __init__(self, model: Path, *, port: Optional[int] = None, log: Optional[Path] = None) -> None:
        self.model, self.port = model, port or free_port()
        self.log = log
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 90.0) -> "LlamaServer":
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", "local",
             "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "1", "--n_threads_batch", "1",
             "--n_ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self._process.returncode} (log: {self.log})")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer on {self.base_url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
