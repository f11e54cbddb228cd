"""The `veil` command: thin Typer wiring over the library. Imports nothing heavy."""

from __future__ import annotations

import sqlite3
import sys

import typer
import typer.main

from veil import __version__
from veil.cli import _demo, export, pool, privacy, sched, serve, snapshot, solutions, volume
from veil.cli._help import tidy
from veil.cli._render import err_console
from veil.cli.doctor import doctor
from veil.cli.lineage import lineage
from veil.errors import VeilError

try:  # typer >= 0.20 carries its own copy of click; older ones use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

app = typer.Typer(
    name="veil",
    help="veil: private, reproducible AI on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(volume.app, name="volume")
app.add_typer(snapshot.app, name="snapshot")
app.add_typer(pool.app, name="pool")
app.add_typer(privacy.app, name="privacy")
solutions.install(app)  # veil solutions NAME ... and veil train NAME, from the registry
app.add_typer(serve.app, name="serve")
app.add_typer(export.app, name="export")
app.command("doctor")(doctor)
app.command("lineage")(lineage)
app.add_typer(sched.job_app, name="job")
app.add_typer(sched.project_app, name="project")
app.add_typer(sched.node_app, name="node")
app.add_typer(sched.scheduler_app, name="scheduler")
for _name, _command in sched.JOB_ALIASES.items():  # veil submit ... = veil job submit ...
    app.command(_name, hidden=True)(_command)
app.command("report")(sched.report)
app.command("demo")(_demo.demo)


def _version(value: bool) -> None:
    if value:
        print(f"veil {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """veil: private, reproducible AI on your own data."""


def _usage_error(e: click_errors.ClickException) -> int:
    """A usage mistake (missing argument, non-numeric value, unknown option) in one line, with
    the command whose --help explains it."""
    if isinstance(e, click_errors.NoArgsIsHelpError):
        return 2  # `veil` or `veil volume` alone: typer has printed the help
    ctx = getattr(e, "ctx", None)
    usage = isinstance(e, click_errors.UsageError) and ctx is not None
    hint = f" (see '{ctx.command_path} --help')" if usage else ""
    message = " ".join(e.format_message().split())  # click's messages may span lines
    err_console.print(f"error: {message}{hint}", markup=False)
    return e.exit_code


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors end in one line on stderr and a non-zero exit code."""
    try:
        command = tidy(typer.main.get_command(app))
        rv = command.main(args=argv, prog_name="veil", standalone_mode=False)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except click_errors.ClickException as e:
        code = _usage_error(e)
    except typer.Abort:
        err_console.print("Aborted.")
        code = 1
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except VeilError as e:
        err_console.print(f"error: {e}", markup=False)
        code = e.exit_code
    except sqlite3.Error as e:
        err_console.print(f"error: veil's metadata database: {e}", markup=False)
        code = 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        err_console.print(f"error: {e.strerror or e}{where}", markup=False)
        code = 1
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        code = 130
    if argv is None:
        sys.exit(code)
    return code
