"""`veil solutions ...`: the reference solutions, their commands built from the registry.

Every registered solution gets `generate`, `check`, `score` (when a metric scores files), one
command per job, `export k8s` and `info`; nothing here names a solution, except the extra
commands of `_face` (serving) that are not part of the contract.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from veil.cli._render import console, err_console, print_json

app = typer.Typer(help="Reference architectures built end to end on veil.", no_args_is_help=True)
train_app = typer.Typer(help="Training jobs of the solutions (the same as veil solutions NAME "
                             "train).", no_args_is_help=True)

# --------------------------------------------------------------------- building commands


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def _command(impl: Callable[[dict], Any], params: list[inspect.Parameter], doc: str):
    """A function Typer can read: its signature is `params`, its body calls impl(kwargs)."""
    def command(**kwargs: Any) -> Any:
        return impl(kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


def _field_params(cls: type, prefix: str = "", export: bool = False
                  ) -> list[inspect.Parameter]:
    """One option per field of dataclass `cls` (fields marked `shared` come from the shared
    block; with `export`, fields marked export=False are left out): --kebab-name, --x/--no-x
    for booleans, the field's metadata help."""
    from veil.train import field_type

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("shared") or (export and f.metadata.get("export") is False):
            continue
        tp = field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else ...)
        flag = "--" + f.name.replace("_", "-")
        if f.metadata.get("path"):
            tp = Path
        if tp is bool:
            opt = typer.Option(default, f"{flag}/--no-{flag[2:]}", help=f.metadata.get("help"))
        else:
            opt = typer.Option(default, flag, help=f.metadata.get("help"))
        out.append(_param(prefix + f.name, tp, opt))
    return out


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    """Dataclass `cls` from the command's values (the shared fields keep their defaults or
    placeholders the job fills in), checked against its fields' bounds."""
    from veil.train import check_fields

    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("shared"):
            if prefix + f.name in values:
                kwargs[f.name] = values[prefix + f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[f.name] = ""  # filled from the shared options by the runner
            continue
        if prefix + f.name not in values:
            continue  # not offered (export=False): the default
        v = values.get(prefix + f.name)
        if isinstance(v, Path) and f.metadata.get("path"):
            v = str(v)
        kwargs[f.name] = v
    return check_fields(cls(**kwargs))


def _log(message: str) -> None:
    err_console.print(message, markup=False)


def _needs(needs: dict, what: str) -> None:
    from veil.errors import require_extra

    for module, extra in needs.items():
        require_extra(module, extra, what)


# --------------------------------------------------------------------- per-solution commands


def _list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every registered solution, the report it implements, and its commands."""
    from veil.solutions import list_solutions, load_errors

    sols = list_solutions()
    for name, why in load_errors().items():
        err_console.print(f"warning: solution {name!r} could not be loaded: {why}",
                          markup=False)
    if as_json:
        return print_json([{"name": s.name, "report": s.report, "description": s.description,
                            "jobs": [j.name for j in s.jobs],
                            "formats": [f.name for f in s.formats],
                            "models": [m.name for m in s.models]} for s in sols])
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("SOLUTION", "REPORT", "JOBS", "DESCRIPTION"):
        t.add_column(col)
    for s in sols:
        t.add_row(s.name, s.report, ", ".join(j.name for j in s.jobs) or "-", s.description)
    console.print(t)


app.command("list")(_list_command)


def _info(sol) -> Callable:
    def info(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        data = {"name": sol.name, "report": sol.report, "description": sol.description,
                "formats": [{"name": f.name, "description": f.description,
                             "sizes": dict(f.sizes)} for f in sol.formats],
                "models": [{"name": m.name, "description": m.description,
                            "weights": m.weights, "split": m.split} for m in sol.models],
                "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better,
                             "description": m.description} for m in sol.metrics],
                "jobs": [{"name": j.name, "description": j.description,
                          "kubernetes": j.k8s is not None} for j in sol.jobs],
                "privacy_task": sol.privacy_task, "benchmark": sol.benchmark}
        if as_json:
            return print_json(data)
        console.print(f"{sol.name} ({sol.report}): {sol.description}", markup=False)
        for f in sol.formats:
            console.print(f"  data set format {f.name}: {f.description}", markup=False)
        for m in sol.models:
            split = f", split after {m.split}" if m.split else ""
            console.print(f"  model {m.name}: {m.description}{split}", markup=False)
        for m in sol.metrics:
            way = "higher" if m.higher_is_better else "lower"
            console.print(f"  metric {m.name} ({way} is better): {m.description}",
                          markup=False)
        for j in sol.jobs:
            console.print(f"  job {j.name}: {j.description}", markup=False)

    info.__doc__ = f"What {sol.name} provides: formats, models, metrics, jobs."
    return info


def _generate(sol, fmt) -> Callable:
    def impl(kw: dict) -> None:
        from veil.progress import TqdmProgress
        from veil.solutions import generate_dataset, resolve

        _needs(fmt.needs, f"veil solutions {sol.name} generate")
        with TqdmProgress(keep=True) as bar:  # drawn only once the generator starts writing
            target, sizes = generate_dataset(fmt, kw["path"], seed=kw["seed"],
                                             sizes={k: kw[k] for k in fmt.sizes},
                                             volume=kw["volume"], progress=bar)
        what = resolve(fmt.describe)(sizes) if fmt.describe else f"a {fmt.name} data set"
        if kw["as_json"]:
            return print_json({"path": str(target), "volume": kw["volume"], "format": fmt.name,
                               "seed": kw["seed"], "sizes": sizes, "description": what})
        console.print(f"Wrote {what} to {target}.", markup=False)

    params = [
        inspect.Parameter("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                          default=typer.Argument(..., help="New folder to write the data set "
                                                 "into.")),
        _param("seed", int, typer.Option(0, "--seed", help="Same seed, same files.")),
        _param("volume", str | None, typer.Option(None, "--volume", help="Write into this "
               "veil volume (created if missing); PATH is then relative to it.")),
    ]
    for name, default in fmt.sizes.items():
        params.append(_param(name, int, typer.Option(
            default, "--" + name.replace("_", "-"), help=fmt.size_help.get(name))))
    params.append(_param("as_json", bool, typer.Option(False, "--json", help="Print JSON: "
                                                       "where it was written, the sizes.")))
    return _command(impl, params, f"Write a generated data set in {fmt.name}'s layout "
                                  f"({fmt.description}).")


def _check(sol, fmt) -> Callable:
    def check(path: Path = typer.Argument(..., help="The data set's folder (or one label "
                                          "file where the format has them)."),
              volume: str = typer.Option(None, "--volume", help="PATH is inside this volume."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        from veil import data
        from veil.solutions import resolve

        _needs(fmt.needs, f"veil solutions {sol.name} check")
        report = resolve(fmt.check)(data.resolve_path(path, volume))
        if as_json:
            print_json({**report.summary, "errors": report.errors})
        else:
            for e in report.errors:
                err_console.print(e, markup=False)
            console.print(report.line, markup=False)
        if report.errors:
            raise typer.Exit(1)

    check.__doc__ = (f"Read every file of a {fmt.name} data set and check it; report each "
                     "problem with its file and line.")
    return check


def _score(sol, metric) -> Callable:
    def score(pred: Path = typer.Argument(..., help="Predictions."),
              truth: Path = typer.Argument(..., help="Ground truth."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        from veil.solutions import resolve

        res = resolve(metric.score)(pred, truth)
        if as_json:
            return print_json(res)
        shown = list(metric.shown) or [k for k, v in res.items() if isinstance(v, float)]
        for k in shown:
            print(f"{k} {res[k]:.4f}")
        rest = [f"{k.replace('_', ' ')} {v:.4f}" if isinstance(v, float)
                else f"{k.replace('_', ' ')} {v}" for k, v in res.items() if k not in shown]
        if rest:
            err_console.print(f"({'; '.join(rest)})", markup=False)

    score.__doc__ = f"Score predictions against ground truth: {metric.description}."
    return score


def _job(sol, job) -> Callable:
    from veil.solutions import resolve

    snap_flags = ["--snapshot/--no-snapshot", *job.snapshot_flags]
    params = [
        _param("data", str | None, typer.Option(None, "--data", *job.data_flags, help=(
            "The data set's folder; with --volume, a path inside the volume."))),
        _param("volume", str | None, typer.Option(None, "--volume", help="Read the data from "
               "this veil volume.")),
        _param("out", Path | None, typer.Option(None, "--out", help="Write the run's files "
               "here (with --volume, relative to it).")),
        _param("results", str | None, typer.Option(None, "--results", help="Store the run's "
               "files on this veil volume (created if missing), in RESULTS/<run>/.")),
        _param("snapshot", bool | None, typer.Option(
            None, *snap_flags, show_default=False,
            help="Snapshot the results volume (else the data volume) after success "
                 f"(default: {'on with --results' if job.snapshot else 'off'}).")),
        _param("job_name", str | None, typer.Option(None, "--job", help="The run's name (in "
               "the MLflow run's and the snapshot's names).")),
        _param("track", bool, typer.Option(True, "--track/--no-track", help="Record the run "
               "and its lineage in MLflow (VEIL_HOME/mlflow.db).")),
        _param("device", str, typer.Option("cpu", "--device", help="torch device: cpu, "
               "cuda, ...")),
        _param("seed", int, typer.Option(0, "--seed", help="Random seed.")),
        _param("as_json", bool, typer.Option(False, "--json", help="Print JSON.")),
        *_field_params(job.config, prefix="cfg_"),
    ]

    def impl(kw: dict) -> None:
        from veil.errors import require_extra
        from veil.progress import TqdmProgress
        from veil.train import run_job

        _needs(job.needs, f"veil solutions {sol.name} {job.name}")
        cfg = _build(job.config, kw, prefix="cfg_")
        name = kw["job_name"] or (resolve(job.name_for)(cfg) if job.name_for else sol.name)
        snapshot = kw["snapshot"]
        if snapshot is None:
            snapshot = job.snapshot and kw["results"] is not None
        flag = (job.snapshot_flags or snap_flags)[0].split("/")[0]
        data_flag = (job.data_flags or ("--data",))[0]
        if kw["track"]:
            require_extra("mlflow", "track", "recording the run (--no-track skips it)")
        checks = resolve(job.prepare)

        def prepare(config, ctx) -> None:  # everything checked: now the store may be made
            if checks is not None:
                checks(config, ctx)
            if kw["track"]:
                _open_lineage_store()

        with TqdmProgress(keep=True) as bar:
            res = run_job(resolve(job.run), cfg, job=name,
                          experiment=job.experiment or sol.name, solution=sol.name,
                          data=kw["data"], volume=kw["volume"], out=kw["out"],
                          results=kw["results"], snapshot=snapshot, snapshot_flag=flag,
                          data_required=f"{data_flag} is required ({job.data})"
                          if job.data else None,
                          track=kw["track"], device=kw["device"], seed=kw["seed"],
                          metric=job.metric, out_required=job.out_required,
                          prepare=prepare, log=_log, progress=bar)
        shown = resolve(job.render)(res) if job.render else _default_render(res)
        if kw["as_json"]:
            print_json(shown.data)
        else:
            for line in shown.lines:
                console.print(line, markup=False)
            for note in shown.notes:
                err_console.print(note, markup=False)
        if shown.code:
            raise typer.Exit(shown.code)

    return _command(impl, params, job.description)


def _open_lineage_store() -> None:
    """Make the MLflow store of a home that has none yet, saying so: its schema takes ~20 s to
    create, which would otherwise be silence before the job's first line."""
    from veil import track

    store = Path(track.tracking_uri().removeprefix("sqlite:///"))
    if not store.exists():
        _log(f"Creating the lineage store {store} (MLflow; once per veil home, takes ~20 s) "
             "...")
        track.runs()


def _default_render(res):
    from veil.solutions import Rendered

    lines = [f"Run {res.run_name} finished; files: {res.out or '-'}"]
    if res.run_id:
        lines.append(f"MLflow run: {res.run_id}")
    if res.snapshot:
        lines.append(f"Snapshot: {res.snapshot} (volume {res.snapshot_volume})")
    lines += [f"{k} {v:.4f}" for k, v in res.output.metrics.items()]
    return Rendered(lines, [], {"metrics": res.output.metrics, "run_id": res.run_id,
                                "snapshot": res.snapshot, "out": res.out})


def _export_k8s(sol, job) -> Callable:
    from veil.solutions import resolve

    d = {"namespace": "default", "image": "veil:latest", "gpus": 0, **job.k8s_defaults}
    params = [
        inspect.Parameter("directory", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Path, default=typer.Argument(
                              ..., help="Folder to write the manifests into.")),
        _param("data", str | None, typer.Option(None, "--data", *job.data_flags, help=(
            "The data set's path inside the data PVC."))),
        _param("project", str | None, typer.Option(None, "--project", "-p", help="A veil "
               "project (veil project list): the job goes to its KAI-Scheduler queue.")),
        _param("namespace", str, typer.Option(d["namespace"], "--namespace")),
        _param("image", str, typer.Option(d["image"], "--image", help="Container image.")),
        _param("gpus", int, typer.Option(d["gpus"], "--gpus", help="nvidia.com/gpu limit per "
               "process.")),
        *([_param("cfg_seed", int, typer.Option(0, "--seed", help="Random seed."))]
          if "seed" in {f.name for f in dataclasses.fields(job.config)} else []),
        *_field_params(job.config, prefix="cfg_", export=True),
        *(_field_params(job.k8s_options, prefix="k8s_") if job.k8s_options else []),
        _param("as_json", bool, typer.Option(False, "--json", help="Print JSON: the files "
                                             "written.")),
    ]

    def impl(kw: dict) -> None:
        from veil import k8s

        project = kw["project"]
        if project is not None:
            from veil.sched import list_projects

            if project not in {p.name for p in list_projects()}:
                from veil.errors import NotFound

                raise NotFound(f"no project {project!r} (veil project list; veil project "
                               "create NAME --gpus N)")
        cfg = _build(job.config, kw, prefix="cfg_")
        opts = _build(job.k8s_options, kw, prefix="k8s_") if job.k8s_options else None
        target = k8s.Target(kw["namespace"], kw["image"], kw["gpus"], project).check()
        extra = {"data": kw["data"]} if kw["data"] is not None else {}
        docs = resolve(job.k8s)(cfg, target, opts, **extra)
        files = k8s.write(kw["directory"], docs)
        if kw["as_json"]:
            return print_json({"files": [str(f) for f in files]})
        for f in files:
            console.print(f"wrote {f}", markup=False)

    return _command(impl, params, f"Write Kubernetes manifests for the {job.name} job "
                                  f"({sol.report}); with --project, in that project's KAI "
                                  "queue.")


def solution_app(sol) -> typer.Typer:
    """The `veil solutions NAME` group of one solution, from its registration."""
    t = typer.Typer(help=f"{sol.report}: {sol.description}", no_args_is_help=True)
    t.command("info")(_info(sol))
    for fmt in sol.formats[:1]:
        t.command("generate")(_generate(sol, fmt))
        t.command("check")(_check(sol, fmt))
    for metric in sol.metrics:
        if metric.files:
            t.command("score")(_score(sol, metric))
            break
    exportable = [j for j in sol.jobs if j.k8s is not None]
    for job in sol.jobs:
        t.command(job.name)(_job(sol, job))
    if exportable:
        ex = typer.Typer(help="Write the solution's jobs for other engines.",
                         no_args_is_help=True)
        for job in exportable:
            ex.command("k8s" if len(exportable) == 1 else f"k8s-{job.name}")(
                _export_k8s(sol, job))
        t.add_typer(ex, name="export")
    return t


EXTRAS: dict[str, Callable[[typer.Typer], None]] = {}


def _extras() -> None:
    from veil.cli import _face

    EXTRAS["face-privacy"] = _face.register


def install(root: typer.Typer) -> None:
    """Add `veil solutions` and `veil train` for every registered solution."""
    from veil.solutions import list_solutions

    _extras()
    for sol in list_solutions():
        group = solution_app(sol)
        if sol.name in EXTRAS:
            EXTRAS[sol.name](group)
        app.add_typer(group, name=sol.name)
        for job in sol.jobs:
            if job.name == "train":
                train_app.command(sol.name)(_job(sol, job))
    root.add_typer(app, name="solutions")
    root.add_typer(train_app, name="train")
