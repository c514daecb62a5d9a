"""Where the Distilabel pipelines run: Distilabel's `Pipeline` on this machine, or its `RayPipeline` on a Ray cluster.

The one place that picks the engine. `label`, `prefer` and `embed` build their steps inside `new_pipeline(...)`, give
their model step `model_resources(...)`, and start it with `run_pipeline(...)`; the steps, checkpoints and outputs are
the same on both engines.

Ray: with `engine.address` the run connects to that cluster (`host:port`, `ray://host:10001`, `auto`); without it a
Ray is started on 127.0.0.1 for the run, with no dashboard. Either way usage statistics are off
(`RAY_USAGE_STATS_ENABLED=0`) and the connection is closed when the run ends (a Ray started for the run stops with
it), so the named actors and queues of one run never meet the next. The run directory must be on storage that every
Ray node sees at the same path: the checkpoint step writes each finished batch from whichever node runs it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from workspaces.config import EngineConfig, EngineKind
from workspaces.errors import ModelError

if TYPE_CHECKING:
    from distilabel.pipeline.base import BasePipeline
    from distilabel.steps import StepResources

__all__ = ["EngineError", "model_resources", "new_pipeline", "ray_session", "resolve_engine", "run_pipeline"]

_DOCS = "See README.md, section 'Outgrowing one machine'."


class EngineError(ModelError):
    """The configured engine cannot be used (Ray not installed, or its cluster unreachable)."""


def resolve_engine(engine: Optional[EngineConfig], ray_address: Optional[str] = None) -> EngineConfig:
    """The engine to use: the config's, or Ray at `ray_address` when given (the `--ray ADDRESS` option)."""
    engine = engine or EngineConfig()
    if ray_address:
        return engine.model_copy(update={"kind": EngineKind.ray, "address": ray_address})
    return engine


def new_pipeline(name: str, cache_dir: Path, engine: Optional[EngineConfig]) -> "BasePipeline":
    """A Distilabel pipeline for `engine`: `Pipeline` (local) or `RayPipeline` (ray). Use it as a context manager."""
    from distilabel.pipeline import Pipeline

    engine = engine or EngineConfig()
    if engine.kind == EngineKind.ray:
        _require_ray()
        from distilabel.pipeline import RayPipeline

        # No head-node URL: `ray_session` connects first, so RayPipeline reuses that connection (a URL would make
        # Distilabel pass `runtime_env={"pip": ...}`, i.e. installs on the workers).
        return RayPipeline(name=name, cache_dir=cache_dir)
    return Pipeline(name=name, cache_dir=cache_dir)


def model_resources(engine: Optional[EngineConfig]) -> "StepResources":
    """Distilabel `StepResources` of the step that calls the model: `engine.replicas` copies (Ray: `engine.cpus`
    CPUs each)."""
    from distilabel.steps import StepResources

    engine = engine or EngineConfig()
    cpus = engine.cpus if engine.kind == EngineKind.ray else None
    return StepResources(replicas=engine.replicas, cpus=cpus)


def _require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise EngineError("engine kind ray needs the `ray` package: `pip install 'curate[ray]'` (or "
                          "`pip install 'ray>=2.31'`). " + _DOCS)


def _host_port(address: str) -> Optional[tuple[str, int]]:
    """(host, port) of `host:port` / `ray://host:port`, or None (`auto`, a bare host)."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once on an address nobody listens on (`ray.init` would retry for minutes)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        raise EngineError(f"engine: no Ray cluster answers at {address} ({exc}); start one with `ray start --head` "
                          "or fix engine.address / --ray. " + _DOCS) from exc


@contextlib.contextmanager
def ray_session(engine: EngineConfig, *, verbose: bool = False) -> Iterator[None]:
    """Connect to (or start) the engine's Ray for one pipeline run, and disconnect (or stop it) afterwards.

    Nothing here talks to anything but the cluster: usage statistics are off, and a Ray started here (no address)
    has no dashboard and listens on 127.0.0.1 only. For a head on 127.0.0.1 (and a Ray started here) Ray is told
    it is a one-machine cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`); otherwise Ray swaps 127.0.0.1 for the
    machine's outward address.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _require_ray()
    if engine.address:
        _check_reachable(engine.address)
    target = _host_port(engine.address) if engine.address else None
    if engine.address is None or (target is not None and _is_loopback(target[0])):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is first imported
    import ray

    if ray.is_initialized():  # the caller runs its own Ray session (a notebook, `ray job submit`)
        yield
        return
    # The actors log through Distilabel's queue at their own DISTILABEL_LOG_LEVEL: give them the driver's.
    env_vars = {k: os.environ[k] for k in ("DISTILABEL_LOG_LEVEL", "HF_HUB_OFFLINE") if k in os.environ}
    kwargs = {"namespace": engine.namespace, "log_to_driver": verbose,
              "logging_level": logging.INFO if verbose else logging.WARNING,
              "runtime_env": {"env_vars": env_vars} if env_vars else None}
    try:
        if engine.address:
            ray.init(address=engine.address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at {engine.address}" if engine.address else "a local Ray"
        raise EngineError(f"engine: cannot connect to {where}: {type(exc).__name__}: {exc}. " + _DOCS) from exc
    try:
        yield
    finally:
        ray.shutdown()


def run_pipeline(pipeline: "BasePipeline", engine: Optional[EngineConfig], *, verbose: bool = False) -> None:
    """Run `pipeline` on `engine` without Distilabel's cache (the stages checkpoint per batch themselves)."""
    engine = engine or EngineConfig()
    session = ray_session(engine, verbose=verbose) if engine.kind == EngineKind.ray else contextlib.nullcontext()
    with session:
        pipeline.run(use_cache=False)
