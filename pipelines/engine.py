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
import functools
import ipaddress
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

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


@functools.lru_cache(maxsize=None)
def _without_recovery_cache(base: type) -> type:
    """`base` (a Distilabel pipeline class) that writes no recovery cache while it runs.

    Distilabel saves its recovery cache (pipeline.yaml with every step's data, batch manager, stages, and a JSON
    copy of the batch) after every batch, and recomputes the pipeline's signature (a dump of every step) each time
    it looks up a cache path: O(batches x items) of CPU in the main process, which a 2-core machine takes from the
    model. The stages run without Distilabel's cache (`use_cache=False`) in a temporary folder and checkpoint each
    batch themselves, so nothing reads it: here it is not written, and the cache paths are computed once per run.

    It also sees the steps loaded as soon as they are: Distilabel checks every 2.5 s, so a run whose steps load in
    0.5 s waited 2.5 s before its first batch.
    """
    from distilabel.pipeline.base import _STEP_LOAD_FAILED_CODE, _STEP_UNLOADED_CODE

    class NoRecoveryCache(base):  # type: ignore[misc, valid-type]
        def run(self, *args: Any, **kwargs: Any) -> Any:
            self._cache_paths = None
            return super().run(*args, **kwargs)

        def _run_steps(self, steps: Iterable[str]) -> None:
            steps = list(steps)
            super()._run_steps(steps)
            wanted = {name: self.dag.get_step_replica_count(name) for name in steps}
            while not self._stop_called:  # Distilabel's own wait follows and finds them settled at its first check
                with self._steps_load_status_lock:
                    status = self._get_steps_load_status(steps)
                if all(status[name] in (_STEP_LOAD_FAILED_CODE, _STEP_UNLOADED_CODE) or status[name] >= count
                       for name, count in wanted.items()):
                    return
                time.sleep(0.02)

        @property
        def _cache_location(self) -> Any:
            if getattr(self, "_cache_paths", None) is None:
                self._cache_paths = base._cache_location.fget(self)  # type: ignore[attr-defined]
            return self._cache_paths

        def _cache(self) -> None:
            pass

        def _register_batch(self, batch: Any) -> None:
            self._batch_manager.register_batch(batch)  # without a JSON copy of every batch in the cache folder

    NoRecoveryCache.__name__ = base.__name__
    return NoRecoveryCache


def new_pipeline(name: str, cache_dir: Path, engine: Optional[EngineConfig]) -> "BasePipeline":
    """A Distilabel pipeline for `engine`: `Pipeline` (local) or `RayPipeline` (ray), without Distilabel's recovery
    cache (`run_pipeline` never uses it). Use it as a context manager."""
    from distilabel.pipeline import Pipeline

    engine = engine or EngineConfig()
    if engine.kind == EngineKind.ray:
        _require_ray()
        from distilabel.pipeline import RayPipeline

        # No head-node URL: `ray_session` connects first, so RayPipeline reuses that connection (a URL would make
        # Distilabel pass `runtime_env={"pip": ...}`, i.e. installs on the workers).
        return _without_recovery_cache(RayPipeline)(name=name, cache_dir=cache_dir)
    return _without_recovery_cache(Pipeline)(name=name, cache_dir=cache_dir)


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


def _end_ray_actors(pipeline: "BasePipeline", *, graceful: bool, grace: float = 60.0) -> None:
    """End the actors of a finished RayPipeline run while the driver is still connected: the step replicas (a
    graceful `__ray_terminate__`, queued behind their `run`), then the queues they talk to; one that does not end in
    `grace` s (or every one when `graceful` is false: the run failed, a replica may wait on its queue forever) is
    killed.

    Distilabel returns once the last batch is in and leaves its actors to the job's end: `ray.shutdown()` then took
    the queues away while the replicas were still ending (unload, notify, log through the queues), so both died at
    once under the job's teardown, and a replica at times with SIGSEGV in `_raylet.so` (issue 26); their names also
    stayed taken in a session the caller keeps open, so a second run there could not create its actors.
    """
    import ray
    from distilabel.constants import INPUT_QUEUE_ATTR_NAME

    replicas = []
    for step in pipeline.dag:
        for replica in range(pipeline.dag.get_step_replica_count(step)):
            with contextlib.suppress(ValueError):  # never created, or already gone
                replicas.append(ray.get_actor(f"distilabel-{pipeline.name}-{step}-{replica}"))
    if graceful and replicas:
        ray.wait([actor.__ray_terminate__.remote() for actor in replicas], num_returns=len(replicas), timeout=grace)
    for actor in replicas:  # a no-op on an actor that has exited
        ray.kill(actor, no_restart=True)
    queues = [pipeline.dag.get_step(step).get(INPUT_QUEUE_ATTR_NAME) for step in pipeline.dag]
    queues += [getattr(pipeline, name, None) for name in ("_output_queue", "_load_queue", "_log_queue")]
    for queue in queues:
        if queue is not None and hasattr(queue, "shutdown"):
            queue.shutdown(force=not graceful, grace_period_s=int(grace))


def run_pipeline(pipeline: "BasePipeline", engine: Optional[EngineConfig], *, verbose: bool = False) -> None:
    """Run `pipeline` on `engine` without Distilabel's cache (the stages checkpoint per batch themselves). On Ray,
    its actors end before the session does (`_end_ray_actors`)."""
    engine = engine or EngineConfig()
    if engine.kind != EngineKind.ray:
        pipeline.run(use_cache=False)
        return
    with ray_session(engine, verbose=verbose):
        try:
            pipeline.run(use_cache=False)
        except BaseException:
            _end_ray_actors(pipeline, graceful=False)
            raise
        _end_ray_actors(pipeline, graceful=True)
