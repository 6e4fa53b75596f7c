"""Exclusive locks on output paths: one writer per output at a time.

A stage that writes ``OUT`` holds ``fcntl.flock`` on ``OUT.lock`` for its whole lifetime. The
lock file holds one line naming the holder (pid, host, start time, command line), so a second
writer refuses with a message a user can act on. The kernel drops the lock when the holder dies
(kill -9 included), so a stale ``OUT.lock`` file never blocks a later run; a clean exit removes
it.

Locks are advisory and local to one machine's kernel (on network filesystems ``flock`` may not
be shared between hosts).
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import socket
import sys
from pathlib import Path

from wsss.errors import UserError

#: file descriptors of the locks this process holds (closed in forked workers, see
#: :func:`close_inherited_locks`)
_HELD: set[int] = set()


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output path: ``OUT.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _holder_line() -> str:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}, command: {command}"


class OutputLock:
    """Exclusive, non-blocking lock on one output path (context manager).

    Args:
        path: the output the lock protects (the lock file is :func:`lock_path` of it).

    Raises:
        UserError: (on :meth:`acquire`) another process holds the lock; the message names it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = lock_path(self.path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "OutputLock":
        import fcntl

        if self._fd is not None:
            return self
        for _ in range(20):
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"{self.file}: cannot create the lock file of {self.path.name} ({exc.strerror}). "
                                "Choose an output folder you can write to.") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "holder not recorded yet"
                os.close(fd)
                raise UserError(f"{self.path}: another wsss process is writing it ({holder}). "
                                "Wait for it to finish or stop it, or choose another output.") from None
            # The holder before us may have removed the file between our open and our flock: then we
            # locked an orphan inode, and must lock the file now at that path instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.file))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            line = (_holder_line() + "\n").encode("utf-8")
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)
            self._fd = fd
            _HELD.add(fd)
            return self
        raise UserError(f"{self.file}: could not lock it (it kept being replaced). Check for other wsss processes.")

    def release(self) -> None:
        """Remove the lock file and drop the lock (no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(fd)
        try:
            # unlink while still holding: a waiter that opened the old file sees the inode change
            os.unlink(self.file)
        except FileNotFoundError:
            pass
        os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def close_inherited_locks() -> None:
    """In a forked child: close the inherited lock descriptors (the parent keeps its locks;
    a child that outlives its parent then does not keep the output locked)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


__all__ = ["OutputLock", "close_inherited_locks", "lock_path"]
