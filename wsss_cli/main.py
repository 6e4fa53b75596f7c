"""Entry point of the ``wsss`` command line.

Each command lives in its own module of this package with a ``register(app)`` function; the
list below fixes the order in ``wsss --help``. Modules not present yet are skipped.
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
    # option help quotes sources as "[paper: 60]": print it literally, not as rich markup
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


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"wsss_cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name == f"wsss_cli.{_name}":
            continue
        raise
    _module.register(app)


def run() -> None:
    """Console-script entry point."""
    from wsss.parallel import shutdown_distributed

    try:
        app()
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    run()
