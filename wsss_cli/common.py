"""Shared pieces of the command modules: error handling, console, common options."""

from __future__ import annotations

import functools
import inspect
import math
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console

from wsss.errors import UserError

console = Console()
err_console = Console(stderr=True)

#: set by the --debug flag of the main callback
STATE = {"debug": False}


def fail_line(message: str) -> None:
    """Print ``error: <message>`` on one line of stderr."""
    from rich.markup import escape

    # escape: messages name files and splits like "[val]", which rich would read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    fail_line(message)
    raise typer.Exit(code=2)


def _flag(parameter: inspect.Parameter | None, name: str) -> str:
    """The option as typed (``--lambda``) for a command's parameter ``name``."""
    decls = getattr(getattr(parameter, "default", None), "param_decls", None) or ()
    longs = [d for d in decls if d.startswith("--")]
    return longs[0].split("/")[0] if longs else "--" + name.replace("_", "-")


def check_finite_options(fn: Callable, values: dict[str, Any]) -> None:
    """Every float option (also inside tuples and lists) must be finite: NaN and ±inf are refused
    for every command here, before the stage's own range checks."""
    parameters = inspect.signature(fn).parameters
    for name, value in values.items():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise UserError(f"{_flag(parameters.get(name), name)} {item}: must be a finite number. Fix the option.")


def describe_os_error(exc: OSError) -> str:
    """One line for a filesystem error: ``"<file>: <reason>. <what to do>"``."""
    where = exc.filename if exc.filename is not None else "input/output"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}. Check the path, its permissions and free disk space."


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable:
    """Register a function as a command; :class:`UserError` becomes one line + exit code 2.

    With ``wsss --debug`` the traceback is printed as well. Float options are checked to be
    finite (:func:`check_finite_options`) before the command runs.
    """

    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any):
            try:
                check_finite_options(fn, kw)
                return fn(*args, **kw)
            except UserError as exc:
                if STATE["debug"]:
                    traceback.print_exc()
                fail(str(exc))
            except OSError as exc:  # a filesystem error no check foresaw: still one line naming the file
                if STATE["debug"]:
                    traceback.print_exc()
                fail(describe_os_error(exc))
            except KeyboardInterrupt:
                err_console.print("interrupted: finished images kept in <output>.parts/; rerun with --resume to continue")
                raise typer.Exit(code=130)

        return app.command(name, **kwargs)(wrapper)

    return decorator


def command_line() -> str:
    """The command line as typed (recorded in artifacts' configuration)."""
    return "wsss " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def config_of(**options: Any) -> dict[str, Any]:
    """The configuration recorded in an artifact: every option plus the command line."""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    cfg["command"] = command_line()
    return cfg


# Options shared by several commands (typer.Option objects are reusable as defaults).
def workers_option() -> Any:
    return typer.Option(1, "--workers", "-j", min=1, help="Worker processes for per-image work (results do not depend on it). Under torchrun, per rank.")


def resume_option() -> Any:
    return typer.Option(False, "--resume", help="Continue an interrupted or killed run: keep the images already in OUTPUT.parts/ "
                        "(refused if the options or the inputs changed since).")


def seed_option(default: int = 0) -> Any:
    return typer.Option(default, "--seed", help="Random seed; the same seed gives the same output.")


def layout_option() -> Any:
    return typer.Option("auto", "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k.")


def split_option(default: str = "train") -> Any:
    return typer.Option(default, "--split", help="Dataset split (train, val, ...; layout-specific).")
