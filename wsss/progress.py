"""Progress bars for long work (rich), usable from library code.

``progress_bar(description, total)`` is a context manager yielding ``advance(n)``; it draws
nothing when disabled (non-main ranks, tests) so callers need no branches.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Show a rich progress bar on stderr while the block runs.

    Args:
        description: label left of the bar.
        total: number of steps (None: unknown).
        enabled: False draws nothing.

    Yields:
        ``advance(n=1, info=None)``: moves the bar by n steps; ``info`` replaces the text shown
        right of the bar (e.g. current loss terms).
    """
    if not enabled:
        yield lambda n=1, info=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    # Outside a terminal (CI logs, pipes) draw nothing: rich would print one final frame per
    # bar, interleaved with results and error lines.
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is not None:
                progress.update(task, advance=n, info=info)
            else:
                progress.advance(task, n)

        yield advance
