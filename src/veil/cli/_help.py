"""Help text as a reader expects it: `NAME` and `[NAME]` in usage lines, TEXT / INTEGER / NUMBER
/ PATH for option values, nothing after a flag.

Typer (0.29) renders Python annotations instead (`{name}`, `<list[str]>`, `--help <bool>`);
`tidy` rewrites the metavars of a built command tree once, before it runs."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

_KIND = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _metavar(param: Any) -> str:
    desc = getattr(param, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    for arg in getattr(annotation, "__args__", ()) or ():  # list[str], str | None
        if arg is not type(None):
            annotation = arg
            break
    if getattr(desc, "is_choice", False):
        return "[" + "|".join(map(str, desc.choices or ())) + "]"
    return _KIND.get(annotation, "VALUE")


def _usage(self: Any) -> str:
    name = self.metavar
    return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")


def _help_option(original: Any) -> Any:
    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option
    return get_help_option


def tidy(command: Any) -> Any:
    """Rewrite the metavars of `command` and every command under it; returns `command`."""
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy(sub)
    command.get_help_option = _help_option(command.get_help_option)
    for param in command.params:
        if param.param_type_name == "argument":
            kind = _metavar(param)
            if param.metavar is None:
                param.metavar = param.name.upper()
            param._usage_display_name = types.MethodType(_usage, param)
            param.display_type_rich = lambda ctx, kind=kind: kind
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _metavar(param)
    return command
