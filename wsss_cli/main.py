"""Entry point of the ``wsss`` command line.

Each command lives in its own module of this package with a ``register(app)`` function; the
list below fixes the order in ``wsss --help``. A listed module that is missing or fails to import
stops the program (:func:`register_commands`): a command never disappears silently.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Optional

import typer
from typer import Abort
from typer.core import TyperGroup

try:  # typer ≥ 0.24 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException

from wsss import __version__
from wsss_cli.common import STATE, err_console, fail_line

COMMAND_MODULES = [
    "demo_data",
    "prepare",
    "superpixels",
    "cam",
    "solve",
    "spml_labels",
    "spml_relabel",
    "train",
    "predict",
    "crf",
    "evaluate",
    "show",
    "info",
]

class OneLineErrorGroup(TyperGroup):
    """The ``wsss`` command group: a usage error (an option out of its range, a missing argument, an
    unknown option) is printed as one line ``error: ...`` with exit code 2, like every other input error."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `wsss` / `wsss cam`: the help text
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" See '{ctx.command_path} -h'." if ctx is not None else ""
            message = " ".join(exc.format_message().split())
            fail_line(f"{message}{'' if message.endswith('.') else '.'}{hint}")
            sys.exit(exc.exit_code)
        except Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="wsss",
    cls=OneLineErrorGroup,
    help="Weakly-supervised semantic segmentation from scribbles, clicks, blocks and image tags. "
    "Each command is one pipeline stage reading and writing HDF5 artifacts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # option help quotes sources as "[Zhang & Boykov 2025: 60]": print it literally, not as rich markup
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wsss {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for input errors."),
) -> None:
    """Weakly-supervised semantic segmentation toolkit."""
    STATE["debug"] = debug


def register_commands(target: typer.Typer, modules: list[str]) -> None:
    """Import ``wsss_cli.<name>`` for every name and call its ``register(target)``; a missing module
    raises (ModuleNotFoundError) instead of dropping its command."""
    for name in modules:
        importlib.import_module(f"wsss_cli.{name}").register(target)


register_commands(app, COMMAND_MODULES)


def run() -> None:
    """Console-script entry point."""
    from wsss.parallel import shutdown_distributed

    try:
        app()
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    run()
