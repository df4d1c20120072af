"""``bbx evaluate --ray``: the photos spread over Ray workers, the lines written by the driver alone.

Each task is one photo's jobs (every method and seed not done yet), run by a worker with the
same code as one process (:func:`bbx.evaluation.runner.run_jobs`, soft masks in lockstep), on the
worker's own copy of the model, opened once per worker process. A worker holds one CPU slot, or
one GPU when the model runs on CUDA. The driver keeps the lock, the settings and the JSON lines
(:func:`bbx.evaluation.runner.run_ledger`): a photo's lines are appended when its task comes back, so
resume and exactly-once are those of one process. A worker that dies mid-photo costs that photo a
retry (Ray reruns the task; nothing of it was written); an error in bbx itself (a bad image) is
not retried: it stops the evaluation with its one line, the finished photos' lines kept.
"""

from __future__ import annotations

import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import BbxError, OptionError
from .runner import EvalConfig, Job, Outcome, Progress, run_jobs, run_ledger
from .lockstep import default_width
from ..model import BlackBox

#: tries of a photo whose worker died, after the first
RETRIES = 3
#: the task's name, which Ray gives the worker process's title while it runs (``ray::bbx_photo``)
TASK = "bbx_photo"

_MODELS: dict[str, BlackBox] = {}  # per worker process: the model of each evaluation, opened once


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("--ray needs Ray, an optional extra: pip install 'bbx[ray]'") from None
    return ray


def evaluate_on_ray(model: BlackBox, open_model: Callable[[], BlackBox], images: Sequence[str | Path],
                    config: EvalConfig, out: str | Path, *, address: str | None = None,
                    progress: Progress | None = None, lockstep: int | None = None,
                    retries: int = RETRIES, gpu: bool | None = None, strict: bool = False) -> Outcome:
    """:func:`bbx.evaluation.runner.evaluate` with the photos spread over Ray workers.

    ``model``: the driver's copy, for the settings it pins. ``open_model()``: opens the same model
    in a worker (picklable: ``functools.partial(open_model, path, threads=1)``). ``address``:
    a running cluster's (``ray start --head`` prints it; ``auto`` finds the local one); None: the
    cluster this process is connected to, else a new local one, shut down at the end.
    ``gpu``: one GPU per worker (default: when ``model`` runs on CUDA), else one CPU slot.
    ``strict``: as :func:`bbx.evaluation.runner.evaluate`'s (the driver reads every photo before it spreads them).
    """
    ray = require_ray()
    if lockstep is not None and lockstep < 1:
        raise OptionError(f"lockstep needs at least 1 explanation in flight, not {lockstep}")
    k = default_width(model, config.explain) if lockstep is None else lockstep
    gpu = model.device == "cuda" if gpu is None else gpu

    def engine(todo: list[Job], report: Callable[[Job, int, int], None]) -> Iterator[tuple[Job, dict[str, Any]]]:
        if not todo:
            return
        _reachable(address)
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            except Exception as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise OptionError(f"cannot start or reach {where}: {_first_line(exc)}") from None
        try:
            yield from _spread(ray, open_model, config, todo, k, gpu, retries, report)
        finally:
            if started_here:
                ray.shutdown()

    return run_ledger(model, images, config, out, progress, engine, strict=strict)


def _spread(ray: Any, open_model: Callable[[], BlackBox], config: EvalConfig, todo: list[Job], k: int, gpu: bool,
            retries: int, report: Callable[[Job, int, int], None]) -> Iterator[tuple[Job, dict[str, Any]]]:
    photos: dict[str, list[Job]] = {}
    for job in todo:
        photos.setdefault(job.image, []).append(job)
    slot = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    task = ray.remote(max_retries=retries, retry_exceptions=False, name=TASK, **slot)(bbx_photo)
    slots = int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)) or 1
    token, opener, settings = uuid.uuid4().hex, ray.put(open_model), ray.put(config)
    waiting, pending = deque(photos.values()), {}
    while waiting or pending:
        while waiting and len(pending) < 2 * slots:  # the next photos queued behind the running ones
            jobs = waiting.popleft()
            pending[task.remote(token, opener, settings, jobs, k)] = jobs
        ready, _ = ray.wait(list(pending), num_returns=1)
        jobs = pending.pop(ready[0])
        try:
            records = ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BbxError):
                raise cause from None
            raise
        for job, rec in records:
            report(job, 1, 1)
            yield job, rec


def bbx_photo(token: str, open_model: Callable[[], BlackBox], config: EvalConfig, jobs: list[Job],
           k: int) -> list[tuple[Job, dict[str, Any]]]:
    """In a worker: one photo's jobs, on this process's copy of the model."""
    if token not in _MODELS:
        _MODELS.clear()  # an earlier evaluation's model
        _MODELS[token] = open_model()
    return list(run_jobs(_MODELS[token], jobs, config, k))


def _reachable(address: str | None, seconds: float = 5.0) -> None:
    """An address ``host:port`` (or ``ray://host:port``) that nothing answers on is one line now:
    Ray itself would keep trying to connect for minutes."""
    import re
    import socket

    found = re.fullmatch(r"(?:ray://)?\[?([\w.\-:]+?)\]?:(\d+)", address or "")
    if found is None:  # None, "auto", "local": Ray finds or starts the cluster itself
        return
    host, port = found.group(1), int(found.group(2))
    try:
        with socket.create_connection((host, port), timeout=seconds):
            pass
    except OSError as exc:
        raise OptionError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
