"""The ``wsss`` command line (Typer). Parsing, progress and messages only; the work is in ``wsss``."""
