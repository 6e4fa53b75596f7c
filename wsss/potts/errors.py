"""The error raised for bad options or inputs of the Potts library and solver."""

from __future__ import annotations

from wsss.errors import UserError


class PottsError(UserError, ValueError):
    """Bad option or input of :mod:`wsss.potts` (unknown name, DN with a non-second-order relaxation,
    seed values ≥ K, shape mismatch, ...).

    Both a :class:`wsss.errors.UserError` (the CLI prints it on one line, exit code 2) and a
    :class:`ValueError` (for library callers). Messages read ``"<option or input>: <what is wrong>.
    <how to fix it>"``.
    """
