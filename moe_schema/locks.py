"""One lock per job key (or train key) across processes: ``flock`` on a small file.

Two runs of one suite sharing a result cache ran every job twice, and two trainers of one train
key on one host shared its resume folder and deleted each other's temporary files. The
coordinator holds ``<cache>/.locks/<job key>.lock`` from dispatch until the job's record is
stored, so another run waits for that job and reuses its result instead of running it again; a
worker holds ``trained/.resume-<train key>.lock`` while it trains (``workers.training.job``).

``flock`` locks belong to an open file: the kernel drops them when the holder exits, however it
exits, so a crashed run never leaves a key locked. Lock files are left in place (removing one
while another process waits on it would let a third take a different lock on a new file of the
same name). Torch-free: the harness and the workers both use it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable


class KeyLock:
    """An exclusive lock on ``path`` (created with its folder), not held until acquired; with
    ``shared``, a shared one (many holders; excludes only an exclusive holder)."""

    def __init__(self, path: str | Path, shared: bool = False):
        self.path = Path(path)
        self.shared = shared
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process (or other ``KeyLock`` on the same file) holds it."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            got = self._flock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not got:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(self, stop: Callable[[], bool] = lambda: False, poll_s: float = 0.2) -> bool:
        """Wait for the lock; False if ``stop()`` turns true first (a cancel, Ctrl-C). The file is
        opened once for the whole wait: a wait of hours holds one file descriptor, not one per poll."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            while not self._flock(fd):
                if stop():
                    os.close(fd)
                    return False
                time.sleep(poll_s)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def _flock(self, fd: int) -> bool:
        """Try the lock on ``fd`` (exclusive, or shared for ``shared``); False while someone else
        holds it the other way."""
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file drops its flock

    def __enter__(self) -> "KeyLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
