"""``bbx evaluate``: every method on every image, one JSON line each, resumable.

A job is (image, method, seed). Each finished job is appended to ``results.jsonl`` as one
synced line (:func:`bbx._io.append_line`) when it finishes, so a killed run loses at most the jobs in
flight (K in lockstep: :mod:`bbx.evaluation.lockstep`; the photos on Ray workers: :mod:`bbx.evaluation.ray_engine`); a
rerun reads the file, drops a torn last line and runs only what is missing. ``settings.json``
pins what changes the numbers (the model, explain settings, areas): resuming with
other settings would mix incomparable results, so it is refused. The tables are computed
from the lines alone (:mod:`bbx.evaluation.summary`).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from .. import methods as registry
from .._io import append_line, clear_stale, ensure_dir
from ..config import ExplainConfig
from ..defaults import EVAL_SEEDS
from ..errors import ImageError, OptionError
from .files import RESULTS, SETTINGS, check_settings, lock, read_records  # noqa: F401
from ..result.explanation import Explanation
from .insertion import AREAS, blur_top_probs
from .localise import truth_fields
from .lockstep import default_width, explain_many
from ..methods.soft_run import SHAREABLE_PATHS
from ..result.record import RECORD_FORMAT, record, record_key  # noqa: F401  (bbx.evaluation.runner.record_key)
from ..model import BlackBox
from ..maths.perturb import BlurSpec, Perturber
from .photos import IMAGE_SUFFIXES, find_images, photo_content  # noqa: F401  (bbx.evaluation.runner.find_images)
from .truth import Truth



@dataclass(frozen=True)
class Job:
    image: str  # resolved path, for the record and the progress line
    method: str
    seed: int
    sha256: str = ""  # the photo's content: what keys the record (a renamed or replaced file is another photo)

    @property
    def key(self) -> tuple[str, str, int]:
        return self.sha256 or self.image, self.method, self.seed

    def fields(self) -> dict[str, Any]:
        """The job as its record names it (:func:`bbx.result.record.record`)."""
        return {"image": self.image, "image_sha256": self.sha256, "method": self.method, "seed": self.seed}


@dataclass(frozen=True)
class EvalConfig:
    """What to run: methods x images x seeds, each method with the settings of ``explain`` it reads.

    ``methods``: registered names (default: every registered method). An option set in
    ``explain`` goes to the methods that read it; one that none of them reads is refused.
    """

    methods: tuple[str, ...] = field(default_factory=lambda: registry.names())
    seeds: int = EVAL_SEEDS
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    areas: tuple[float, ...] = AREAS  # percent of pixels
    truth: Truth | None = None  # each photo's true region: every record gains its localisation (docs/localisation.md)

    def validate(self) -> "EvalConfig":
        if not self.methods:
            raise OptionError(f"methods must be a comma list from {','.join(registry.names())}, not (none)")
        for m in self.methods:
            registry.get(m)
        if len(set(self.methods)) != len(self.methods):
            raise OptionError(f"a method is listed twice: {','.join(self.methods)}")
        if not 1 <= self.seeds <= 1000:
            raise OptionError(f"seeds must be in 1..1000, not {self.seeds}")
        if not self.areas or not all(0 < a <= 100 for a in self.areas):
            raise OptionError(f"areas must be percentages in (0, 100], not {list(self.areas)}")
        self.explain.validate()
        given = self.explain.given()
        unread = [o for o in given if all(o in self._unused(m) for m in self.methods)]
        if unread:
            raise OptionError(f"no method of {','.join(self.methods)} uses {', '.join(unread)}")
        return self

    def unused_by(self) -> dict[str, list[str]]:
        """Per method, the given options it does not read (they go to the other methods)."""
        return {m: self._unused(m) for m in self.methods if self._unused(m)}

    def _unused(self, method: str) -> list[str]:
        return registry.get(method).unused(self.explain.given(), replace(self.explain, method=method))

    def for_method(self, method: str, seed: int) -> ExplainConfig:
        """The settings one job runs with: the given options this method reads, and the seed."""
        spec = registry.get(method)
        cfg = replace(self.explain, method=method)
        keep = {k: v for k, v in self.explain.given().items() if k in spec.reads(cfg)}
        if spec.is_seeded(cfg):
            keep["seed"] = seed
        return ExplainConfig(method=method, **keep)

    def jobs(self, images: Sequence[str], hashes: Sequence[str] = ()) -> list[Job]:
        """Image-major, so a partial run holds every method for its first images; ``hashes``: each
        image's content hash (its records' key)."""
        hashes = list(hashes) or [""] * len(images)
        return [Job(img, m, s, h) for img, h in zip(images, hashes) for m in self.methods
                for s in (range(self.seeds) if registry.get(m).is_seeded(replace(self.explain, method=m)) else (0,))]

    def settings(self, model: BlackBox) -> dict[str, Any]:
        """Everything that changes a job's numbers (the seed and method are in the job)."""
        cfg = {k: v for k, v in asdict(self.explain).items() if k not in ("method", "seed", "patch")}
        return {
            "format": RECORD_FORMAT,
            **model.identity(),
            "preprocess": model.spec.to_json(),
            "explain": cfg,
            "plan": list(self.explain.plan()),
            "patch": self.explain.patch,
            "areas": list(self.areas),
            "target": "top1",
            **({} if self.truth is None else {"truth": self.truth.pin()}),
        }


@dataclass
class Outcome:
    """What one ``evaluate`` call found and did."""

    records: list[dict[str, Any]]  # the requested jobs' result lines, in job order (jobs that failed left out)
    done_before: int
    ran: int
    queries: int  # every query this call made, insertion curves included
    path: Path
    errors: list[dict[str, Any]] = field(default_factory=list)  # this call's error records (photos it could not read)


class Progress(Protocol):
    """What ``evaluate`` reports: once the plan, then every optimizer step of every job."""

    def start(self, done_before: int, todo: int) -> None: ...

    def update(self, done: int, todo: int, job: Job, step: int, steps: int) -> None: ...


def evaluate(
    model: BlackBox,
    images: Sequence[str | Path],
    config: EvalConfig,
    out: str | Path,
    progress: Progress | None = None,
    strict: bool = False,
    lockstep: int | None = None,
) -> Outcome:
    """Run every job of ``config`` on ``images`` not already in ``out/results.jsonl``.

    A photo that cannot be read is skipped with an error record (its jobs run again next time);
    with ``strict``, it stops the evaluation instead. ``lockstep``: how many soft-mask explanations
    are in flight, their probes scored in shared batches (:mod:`bbx.evaluation.lockstep`); default
    (:func:`~bbx.evaluation.lockstep.default_width`): 1 on the CPU, else as many as fill the model's batch
    ceiling. 1: one at a time, each on its method's own query path.
    """
    k = default_width(model, config.explain) if lockstep is None else lockstep
    if k < 1:
        raise OptionError(f"lockstep needs at least 1 explanation in flight, not {k}")
    if k > 1 and config.explain.query_path not in SHAREABLE_PATHS:
        raise OptionError(f"the {config.explain.query_path} query path scores one explanation per call: "
                          f"use lockstep 1, or a host path ({', '.join(SHAREABLE_PATHS)})")
    return run_ledger(model, images, config, out, progress,
                      lambda todo, report: run_jobs(model, todo, config, k, report), strict=strict)


#: runs the jobs it is given and yields each with its record as it finishes, in any order;
#: ``report(job, step, steps)`` says how far a job is
Engine = Callable[[list[Job], Callable[[Job, int, int], None]], Iterator[tuple[Job, dict[str, Any]]]]


def run_ledger(model: BlackBox, images: Sequence[str | Path], config: EvalConfig, out: str | Path,
               progress: Progress | None, engine: Engine, strict: bool = False) -> Outcome:
    """The bookkeeping of every engine (one process, lockstep, Ray): the lock, the settings, what is
    done already, the photos that cannot be read (an error record each, or a stop with ``strict``),
    and each finished job's line appended once, by this process alone."""
    config.validate()
    for method in config.methods:  # before any job: an endpoint may reveal too little for one
        registry.check_reveals(model, method)
    unused = config.unused_by()
    if unused:
        options = sorted({o for names in unused.values() for o in names})
        warnings.warn(f"{', '.join(options)} only go to the methods that read them (not to {', '.join(unused)})",
                      RuntimeWarning, stacklevel=3)
    out = ensure_dir(out)
    images = [str(Path(p).resolve()) for p in images]
    with lock(out):
        clear_stale(out, (RESULTS, SETTINGS, "summary.md", "summary.csv"))
        hashes = [photo_content(img) for img in images]
        unreadable = {img: why for img, (_, why) in zip(images, hashes) if why}
        if config.truth is not None:  # a photo without a good region stops the run before settings and jobs
            config.truth.check([img for img in images if img not in unreadable])
        check_settings(out / SETTINGS, config.settings(model))
        path = out / RESULTS
        lines = read_records(path)
        have = {record_key(r): r for r in lines if "error" not in r}
        noted = {(*record_key(r), r["error"]) for r in lines if "error" in r}  # not appended again on a rerun
        images, hashes = _distinct_photos(images, hashes)
        jobs = config.jobs(images, [h for h, _ in hashes])
        todo = [j for j in jobs if j.key not in have]
        errors: list[dict[str, Any]] = []
        if unreadable and todo:
            todo = _skip_unreadable(todo, unreadable, path, errors, strict, noted)
        wanted = {j.key for j in todo}
        if progress is not None:
            progress.start(len(jobs) - len(todo) - len(errors), len(todo))
        finished = 0
        queries = 0

        def report(job: Job, step: int, steps: int) -> None:
            if progress is not None:
                progress.update(finished, len(todo), job, step, steps)

        for job, rec in engine(todo, report):
            if job.key not in wanted or job.key in have:
                raise RuntimeError(f"an engine returned {job.key} twice or unasked")  # a bug, never the user's
            append_line(path, rec)
            have[job.key] = rec
            finished += 1
            queries += rec["queries"] + rec["insertion_queries"] + rec.get("truth", {}).get("queries", 0)
        if progress is not None and todo:
            progress.update(len(todo), len(todo), todo[-1], 1, 1)
        return Outcome(records=[have[j.key] for j in jobs if j.key in have], done_before=len(jobs) - len(todo)
                       - len(errors), ran=len(todo), queries=queries, path=path, errors=errors)


def _distinct_photos(images: list[str], hashes: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The photos with distinct content, each once (records are keyed by content: two byte-identical
    photos are one job, explained once); the copies are named in one warning."""
    first: dict[str, str] = {}
    keep, copies = [], []
    for img, (digest, why) in zip(images, hashes):
        if digest and digest in first:
            copies.append(f"{img} (= {first[digest]})")
            continue
        if digest:
            first[digest] = img
        keep.append(img)
    if copies:
        shown = "; ".join(copies[:3]) + (f"; and {len(copies) - 3} more" if len(copies) > 3 else "")
        many = len(copies) > 1
        warnings.warn(f"{len(copies)} photo{'s repeat' if many else ' repeats'} another's content and "
                      f"{'are' if many else 'is'} explained once: {shown}", RuntimeWarning, stacklevel=4)
    kept = set(keep)
    return keep, [h for img, h in zip(images, hashes) if img in kept]


def _skip_unreadable(todo: list[Job], unreadable: dict[str, str], path: Path, errors: list[dict[str, Any]],
                     strict: bool, noted: set[tuple[Any, ...]] = frozenset()) -> list[Job]:
    """The jobs of readable photos; each job of an unreadable one gets an error record (or, with
    ``strict``, the first stops the evaluation)."""
    keep = []
    for job in todo:
        if job.image not in unreadable:
            keep.append(job)
            continue
        if strict:
            raise ImageError(unreadable[job.image])
        rec = {"image": job.image, "image_sha256": job.sha256, "method": job.method, "seed": job.seed,
               "error": unreadable[job.image]}
        if (*job.key, rec["error"]) not in noted:  # the same photo, unreadable the same way, is one line
            append_line(path, rec)
        errors.append(rec)
    return keep


def run_jobs(model: BlackBox, jobs: Sequence[Job], config: EvalConfig, k: int,
             report: Callable[[Job, int, int], None] | None = None) -> Iterator[tuple[Job, dict[str, Any]]]:
    """Each job's record as it finishes, up to ``k`` soft-mask explanations in lockstep."""
    def progress_of(job: Job) -> Callable[..., None] | None:
        if report is None:
            return None
        report(job, 0, 1)
        return lambda s, n, _loss=0.0: report(job, s, n)

    requests = [(job, job.method, job.image, config.for_method(job.method, job.seed)) for job in jobs]
    sent = dict(model.traffic or {})
    for job, e in explain_many(model, requests, k, progress_of):
        rec = measured(model, job, e, config)
        if sent:  # an endpoint: what the wire carried since the last record (in lockstep, shared rounds)
            now = dict(model.traffic)
            rec["traffic"] = {key: v - sent[key] for key, v in now.items()}
            sent = now
        yield job, rec


def run_job(model: BlackBox, job: Job, config: EvalConfig,
            step: Callable[..., None] | None = None) -> dict[str, Any]:
    """One method on one image with one seed, then its blur-insertion curve: one JSON record."""
    return next(run_jobs(model, [job], config, 1, None if step is None else lambda _job, s, n: step(s, n)))[1]


def measured(model: BlackBox, job: Job, e: Explanation, config: EvalConfig) -> dict[str, Any]:
    """The job's record: its explanation, its blur-insertion curve (one query per area) and, with a
    truth, its localisation and the truth region's own φ (one query)."""
    cfg = config.explain
    pert = Perturber(e.image, blur_spec=BlurSpec(cfg.sigma, cfg.kernel))
    probs = blur_top_probs(model, pert, e.heatmap, [a / 100 for a in config.areas])
    rec = record(job.fields(), e, dict(zip(config.areas, map(float, probs[:, e.top1]))),
                 top1_at_area=[int(k) for k in probs.argmax(axis=1)])
    if config.truth is not None:
        size = e.photo.shape[:2] if e.photo is not None else e.heatmap.shape
        rec["truth"] = truth_fields(model, e, config.truth.region(job.image, size), pert, config.truth.tolerance)
    return rec
