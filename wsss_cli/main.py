"""Entry point of the ``wsss`` command line.

Each command lives in its own module of this package with a ``register(app)`` function; the
list below fixes the order in ``wsss --help``. A listed module that is missing or fails to import
stops the program (:func:`register_commands`): a command never disappears silently.
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from wsss import __version__
from wsss_cli.common import STATE

COMMAND_MODULES = [
    "demo_data",
    "prepare",
    "superpixels",
    "cam",
    "solve",
    "train",
    "predict",
    "crf",
    "evaluate",
    "show",
    "info",
]

app = typer.Typer(
    name="wsss",
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
