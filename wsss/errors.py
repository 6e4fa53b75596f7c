"""Errors a user can fix.

Every check on user input raises :class:`UserError` with one sentence that names the file (or
option) at fault and says what to do. The command line prints it on one line and exits with
code 2, without a traceback (``wsss --debug`` shows it).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input a user can fix: a missing or corrupt file, a wrong size, an unknown class, ...

    The message should read ``"<file>: <what is wrong>. <how to fix it>"``.
    """

    exit_code = 2
