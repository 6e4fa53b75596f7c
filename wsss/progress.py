"""Progress bars for long work (rich), usable from library code.

``progress_bar(description, total)`` is a context manager yielding ``advance(n)``; it draws
nothing when disabled (non-main ranks, tests) so callers need no branches.
"""

from __future__ import annotations

import contextlib
import sys
import time
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

    console = Console(file=sys.stderr)
    if not console.is_terminal:
        # CI logs and pipes: no live bar (rich would print a frame per refresh, and one more
        # before an error message); one summary line once the work is done, none on error.
        done = 0
        start = time.monotonic()

        def count(n: int = 1, info: str | None = None) -> None:
            nonlocal done
            done += n

        yield count
        of = f"/{total}" if total is not None else ""
        console.print(f"{description}: {done}{of} done in {time.monotonic() - start:.1f} s", highlight=False)
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is not None:
                progress.update(task, advance=n, info=info)
            else:
                progress.advance(task, n)

        yield advance
