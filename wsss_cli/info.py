"""``wsss info``: what an artifact is and how it was made."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from wsss.artifacts import KINDS, Artifact, describe_chain
from wsss_cli.common import command, console


def register(app: typer.Typer) -> None:
    @command(app, "info")
    def info(
        path: Path = typer.Argument(..., help="An artifact (.h5) written by any wsss stage."),
        config: bool = typer.Option(True, "--config/--no-config", help="Print the full recorded configuration."),
    ) -> None:
        """Print an artifact's kind, schema, classes, image count, configuration and provenance chain."""
        art = Artifact(path)
        table = Table(show_header=False, box=None)
        table.add_row("file", str(art.path))
        table.add_row("kind", f"{art.kind} — {KINDS.get(art.kind, '')}")
        table.add_row("schema", str(art.schema))
        table.add_row("written by", f"wsss {art.attrs.get('wsss_version', '?')} at {art.attrs.get('created', '?')}")
        table.add_row("images", str(len(art)))
        classes = art.classes
        table.add_row("classes", f"{len(classes)}: {', '.join(classes)}")
        table.add_row("ignore index", str(art.ignore_index))
        if art.dataset:
            ds = art.dataset
            table.add_row("dataset", f"{ds.get('layout')} {ds.get('root')} [{ds.get('split')}]")
        stats = art.json_attr("stats")
        if stats:
            table.add_row("statistics", json.dumps(stats, sort_keys=True)[:2000])
        console.print(table)
        if config:
            console.print("[bold]configuration[/]")
            console.print_json(json.dumps(art.config, sort_keys=True))
        console.print("[bold]provenance[/]")
        for line in describe_chain(art.provenance()):
            console.print(line, highlight=False)
