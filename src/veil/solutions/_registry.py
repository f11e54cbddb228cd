"""The solution contract and its registry.

A solution is one package that registers a `Solution` when its registration module is imported
(and keeps it as that module's `SOLUTION`); the module is named by an entry point in group
`veil.solutions` (pyproject.toml). Everything a
solution declares is cheap to import: callables may be given as 'module:attr' strings, resolved
on first use, so `veil solutions list` and `veil --help` import no model code.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.errors import InvalidArgument, NotFound

ENTRY_POINT_GROUP = "veil.solutions"

Ref = Callable[..., Any] | str  # a callable, or 'module:attr' naming one


def resolve(ref: Ref | None) -> Any:
    """The object a Ref names (the callable itself when given one)."""
    if ref is None or not isinstance(ref, str):
        return ref
    from veil.train import resolve as named

    return named(ref)


@dataclass(frozen=True)
class CheckReport:
    """What a dataset checker found: counts to show, the problems (each naming its file and
    line), and one summary line."""

    summary: dict[str, Any]
    errors: list[str]
    line: str

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class DatasetFormat:
    """An on-disk data set format.

    generate(path, *, seed, sizes, progress) -> Path writes a data set in this format (and a
        dataset.json manifest) at `path`, which must not exist; `sizes` maps the names in
        `sizes` below to counts (missing ones take these defaults), each a whole number in
        [size_min (default 0), size_max (default MAX_SIZE)], not all 0.
    check(path) -> CheckReport reads everything and reports each problem.
    read(path) -> the format's data set object.
    """

    name: str
    description: str
    generate: Ref
    check: Ref
    read: Ref | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)
    size_help: Mapping[str, str] = field(default_factory=dict)
    size_min: Mapping[str, int] = field(default_factory=dict)  # default 0
    size_max: Mapping[str, int] = field(default_factory=dict)  # default MAX_SIZE
    describe: Ref | None = None  # describe(sizes) -> "40 images (10 folds of 4)", for messages
    needs: Mapping[str, str] = field(default_factory=dict)  # module -> veil extra installing it


@dataclass(frozen=True)
class ModelSpec:
    """A model the solution can build: `build(**kwargs)` returns it (with `weights` loaded when
    the solution ships them); `split` names the layer after which veil.privacy may split it."""

    name: str
    description: str
    build: Ref
    weights: Path | None = None
    split: str | None = None


@dataclass(frozen=True)
class Metric:
    """A score: `score(predictions, truth)`, higher is better unless said otherwise. With
    `files`, both are paths, and the platform offers `veil solutions NAME score PRED TRUTH`."""

    name: str
    score: Ref
    higher_is_better: bool = True
    files: bool = False  # score(PRED path, TRUTH path) -> {name: value}
    description: str = ""
    shown: Sequence[str] = ()  # with files: the values printed on stdout (default: all)


@dataclass
class Rendered:
    """A job's outcome as a person reads it (lines on stdout, notes on stderr) and as a script
    reads it (`data`, printed with --json), with the exit code."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: Any = None
    code: int = 0


@dataclass(frozen=True)
class JobSpec:
    """A job: a config dataclass and `run(config, context) -> veil.train.JobOutput`, run by
    the job-on-a-volume runner.

    prepare(config, context) checks the config and the data before any run is recorded.
    name_for(config) -> str names a run (default: the job's name).
    k8s(config, target, options, *, data) -> {file name: object} writes the job for a cluster;
        `k8s_options` is the dataclass of its own options, `k8s_defaults` overrides the
        namespace, gpus or image of `veil.k8s.Target`.
    snapshot: whether runs snapshot their volume by default; metric: the headline metric.
    """

    name: str
    description: str
    config: type
    run: Ref
    prepare: Ref | None = None
    name_for: Ref | None = None
    experiment: str | None = None  # MLflow experiment (default: the solution's name)
    metric: str | None = None
    snapshot: bool = False
    snapshot_flags: Sequence[str] = ()  # other spellings of --snapshot/--no-snapshot
    data_flags: Sequence[str] = ()  # other spellings of --data
    data: str | None = "the data set's folder"  # what --data is (None: the job needs none)
    out_required: bool = False
    k8s: Ref | None = None
    k8s_options: type | None = None
    k8s_defaults: Mapping[str, Any] = field(default_factory=dict)
    render: Ref | None = None  # render(veil.train.JobResult) -> Rendered
    needs: Mapping[str, str] = field(default_factory=dict)  # module -> veil extra installing it


@dataclass(frozen=True)
class Solution:
    """One reference solution: what it is, its data formats, models, metrics and jobs, and
    optional hooks (a privacy task module, a serving spec, a benchmark script)."""

    name: str
    report: str  # e.g. "TR-4904"
    description: str
    formats: Sequence[DatasetFormat] = ()
    models: Sequence[ModelSpec] = ()
    metrics: Sequence[Metric] = ()
    jobs: Sequence[JobSpec] = ()
    # a module whose import registers a veil.privacy task; veil.privacy finds it through the
    # registration module's SOLUTION attribute, so registering a solution imports no torch
    privacy_task: str | None = None
    serving: Ref | None = None  # export(volume, ...) writing Triton models
    benchmark: str | None = None  # a script under benchmarks/

    def format(self, name: str | None = None) -> DatasetFormat:
        """The data set format `name` (default: the first)."""
        return _one(self.formats, name, f"data set format of {self.name}")

    def model(self, name: str | None = None) -> ModelSpec:
        """The model `name` (default: the first)."""
        return _one(self.models, name, f"model of {self.name}")

    def job(self, name: str) -> JobSpec:
        return _one(self.jobs, name, f"job of {self.name}")

    def metric(self, name: str | None = None) -> Metric:
        """The metric `name` (default: the first, the headline)."""
        return _one(self.metrics, name, f"metric of {self.name}")


def _one(items: Sequence[Any], name: str | None, what: str) -> Any:
    """The item called `name` (None: the first), or NotFound naming the ones there are."""
    for it in items:
        if name is None or it.name == name:
            return it
    known = ", ".join(it.name for it in items) or "none"
    raise NotFound(f"no {what} named {name!r} (known: {known})" if name is not None
                   else f"no {what} (there is none)")


_SOLUTIONS: dict[str, Solution] = {}
_FAILED: dict[str, str] = {}  # entry point -> why its module could not be imported
_loaded = False
# names the platform gives every solution's commands and options: a job or config field may
# not take them
RESERVED_JOBS = frozenset({"info", "generate", "check", "score", "export", "list"})
SHARED_OPTIONS = frozenset({"data", "volume", "out", "results", "snapshot", "job", "track",
                            "device", "seed", "json", "project", "namespace", "image", "gpus"})
_NAME = re.compile(r"[a-z][a-z0-9-]*")


def register(solution: Solution) -> Solution:
    """Make `solution` known to `veil solutions ...` (called by its registration module).
    A malformed declaration is a TypeError naming what to change."""
    if not _NAME.fullmatch(solution.name) or solution.name == "list":
        raise TypeError(f"a solution's name is lower-case letters, digits and '-' (not "
                        f"'list'): {solution.name!r}")
    if solution.name in _SOLUTIONS and _SOLUTIONS[solution.name] is not solution:
        raise TypeError(f"two solutions are named {solution.name!r}")
    for job in solution.jobs:
        if job.name in RESERVED_JOBS or not _NAME.fullmatch(job.name):
            raise TypeError(f"{solution.name}: a job may not be named {job.name!r}")
        for cls in (job.config, job.k8s_options):
            if cls is None:
                continue
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{solution.name}: job {job.name}'s {cls!r} must be a "
                                "dataclass")
            clash = {f.name.replace("_", "-") for f in dataclasses.fields(cls)
                     if not f.metadata.get("shared")} & SHARED_OPTIONS
            if clash:
                raise TypeError(f"{solution.name}: job {job.name}'s {cls.__name__} fields "
                                f"{', '.join(sorted(clash))} clash with the shared options")
    _SOLUTIONS[solution.name] = solution
    return solution


def load_entry_points() -> None:
    """Import every registration module named in entry-point group `veil.solutions` (once).
    One that fails to import is left out and kept in `load_errors()`: a broken plugin does not
    break veil."""
    global _loaded
    if _loaded:
        return
    from importlib.metadata import entry_points

    _loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(ep.module)
        except Exception as e:  # a plugin's own bug or missing dependency
            _FAILED[ep.name] = f"{ep.module}: {type(e).__name__}: {e}"


def load_errors() -> dict[str, str]:
    """Entry points whose registration module could not be imported, with why."""
    load_entry_points()
    return dict(_FAILED)


def get_solution(name: str) -> Solution:
    load_entry_points()
    if name not in _SOLUTIONS:
        if name in _FAILED:
            raise NotFound(f"solution {name!r} could not be loaded: {_FAILED[name]}")
        known = ", ".join(sorted(_SOLUTIONS)) or "none"
        raise NotFound(f"no solution {name!r}; registered: {known}")
    return _SOLUTIONS[name]


def list_solutions() -> list[Solution]:
    load_entry_points()
    return [_SOLUTIONS[n] for n in sorted(_SOLUTIONS)]


def create_model(solution: str, name: str | None = None, **kwargs: Any) -> Any:
    """Build solution `solution`'s model `name` (default: its first), timm-style."""
    spec = get_solution(solution).model(name)
    return resolve(spec.build)(**kwargs)


MAX_SIZE = 100_000  # the largest count a generator writes unless its format says otherwise


def sizes_for(fmt: DatasetFormat, sizes: Mapping[str, int] | None) -> dict[str, int]:
    """`sizes` completed with the format's defaults and checked against its bounds; an unknown
    name, a count out of range, or nothing to write is a one-line error."""
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(fmt.sizes)
    if unknown:
        raise InvalidArgument(f"unknown size(s) {', '.join(sorted(unknown))} for {fmt.name} "
                              f"(known: {', '.join(fmt.sizes) or 'none'})")
    out = {**fmt.sizes, **sizes}
    for name, n in out.items():
        lo, hi = fmt.size_min.get(name, 0), fmt.size_max.get(name, MAX_SIZE)
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
            shown = f"{str(n)[:12]}... ({len(str(n))} digits)" if isinstance(n, int) and \
                len(str(n)) > 24 else repr(n)
            raise InvalidArgument(f"--{name.replace('_', '-')} must be a whole number in "
                                  f"[{lo}, {hi}], not {shown}")
    if out and not any(out.values()):
        raise InvalidArgument(f"nothing to write: every size of {fmt.name} is 0")
    return out


def check_new_folder(path: Path) -> Path:
    """`path` if a data set can be written there: nothing there yet (or an empty folder), and
    the nearest folder that exists above it is a folder veil may write in."""
    import os

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidArgument(f"{path} is not empty: choose a new folder for the data set")
    above = path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise InvalidArgument(f"{above} is not a folder: {path} cannot be made under it")
    if not os.access(above, os.W_OK | os.X_OK):
        raise InvalidArgument(f"{above} is not writable: {path} cannot be made under it")
    return path


def generate_dataset(fmt: DatasetFormat, path: str | Path, *, seed: int = 0,
                     sizes: Mapping[str, int] | None = None, volume: str | None = None,
                     progress: Any = None, home: Path | None = None) -> tuple[Path, dict]:
    """Write a data set in format `fmt` at `path` (with `volume`, inside that volume, created
    if missing): the sizes, the seed and the destination are checked before anything is made
    or any progress is shown. Returns (where it was written, the sizes used)."""
    from veil.train import check_seed

    sizes = sizes_for(fmt, sizes)
    check_seed(seed)
    target = Path(path)
    if volume is not None:
        from veil import data
        from veil.data import validate_name

        validate_name(volume, "volume name")
        try:
            data.get_volume(volume, home=home)
        except NotFound:  # made below, once everything else is known to be right
            if target.is_absolute() or ".." in target.parts:
                raise InvalidArgument(f"{path} leads outside volume {volume!r}: give a path "
                                      "relative to the volume") from None
        else:
            check_new_folder(data.resolve_path(target, volume, home=home))
        data.ensure_volume(volume, home=home)
        target = data.resolve_path(target, volume, home=home)
    check_new_folder(target)
    resolve(fmt.generate)(target, seed=seed, sizes=sizes, progress=progress)
    return target, sizes
