"""Shared pieces of the command modules: error handling, console, common options."""

from __future__ import annotations

import functools
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


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    from rich.markup import escape

    # escape: messages name files and splits like "[val]", which rich would read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable:
    """Register a function as a command; :class:`UserError` becomes one line + exit code 2.

    With ``wsss --debug`` the traceback is printed as well.
    """

    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any):
            try:
                return fn(*args, **kw)
            except UserError as exc:
                if STATE["debug"]:
                    traceback.print_exc()
                fail(str(exc))
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
